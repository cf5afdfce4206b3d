/** The release executable as a user meets it: empty environment, any directory, no node_modules. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { PROTOCOL_VERSION } from "../../lib/shared/protocol.ts";

const repo = new URL("../..", import.meta.url).pathname;
const mill = join(repo, "dist", "mill");
const version = JSON.parse(readFileSync(join(repo, "package.json"), "utf8")).version;
const scratch = mkdtempSync(join(tmpdir(), "mill-smoke-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

function runMill(args: string[], env: Record<string, string> = {}) {
  return spawnSync(mill, args, { cwd: scratch, env, encoding: "utf8", timeout: 30_000 });
}

test("dist/mill --help runs with an empty environment from another directory", () => {
  const result = runMill(["--help"]);
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /USAGE/);
  assert.match(result.stdout, /doctor/);
});

test("dist/mill --version prints package.json's version, the Node and wireguard-go inside, and the protocol", () => {
  const result = runMill(["--version"]);
  assert.equal(result.status, 0, result.stderr);
  assert.match(
    result.stdout,
    new RegExp(
      String.raw`^mill ${version}\nnode v24\.[0-9.]+ \(linux-${process.arch}\)\nwireguard-go \S+ from Debian \w+ \(reports v[0-9.]+\)\nprotocol ${PROTOCOL_VERSION.major}\.${PROTOCOL_VERSION.minor} \(works with nodes of protocol ${PROTOCOL_VERSION.major}\.x\)\n$`,
    ),
  );
});

test("an unknown command prints the usage line and exits 2", () => {
  const result = runMill(["frobnicate"]);
  assert.equal(result.status, 2);
  assert.match(result.stderr, /^error: unknown command "frobnicate"\n/);
  assert.match(result.stderr, /\nusage: mill init\|join\|/);
});

test("the embedded WireGuard and interface helper extract privately and run", () => {
  const runtime = join(scratch, "runtime");
  const result = runMill(["doctor"], { MILL_RUNTIME_DIR: runtime });
  assert.equal(result.status, 0, result.stdout + result.stderr);
  assert.match(
    result.stdout,
    new RegExp(`wireguard +${runtime}/wireguard-go-[0-9a-f]{16} \\(wireguard-go v`),
  );
  assert.match(
    result.stdout,
    new RegExp(`netif +${runtime}/mill-netif-[0-9a-f]{16} \\(mill-netif`),
  );
  assert.equal(statSync(runtime).mode & 0o777, 0o700);
});

test("deno runs the same main.ts", () => {
  const deno = join(repo, "node_modules", ".bin", "deno");
  const result = spawnSync(deno, ["run", "-A", join(repo, "main.ts"), "--version"], {
    cwd: repo,
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.equal(result.status, 0, result.stderr);
  assert.equal(result.stdout.split("\n")[0], `mill ${version}`);
  assert.match(result.stdout, /^deno [0-9.]+, running from source$/m);
});
