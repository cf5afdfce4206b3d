/**
 * The release files as `npm run release` leaves them in dist/release: checksums, the pinned
 * wireguard-go inside each executable, the arm64 executable running under qemu-user, and install.sh
 * against a loopback HTTP server serving the release (intact, corrupted, unreachable, and on an
 * architecture with no release).
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { findPin, readManifest } from "../../build/vendor.ts";
import { PROTOCOL_VERSION } from "../../lib/shared/protocol.ts";

const repo = new URL("../..", import.meta.url).pathname;
const release = join(repo, "dist", "release");
const version = JSON.parse(readFileSync(join(repo, "package.json"), "utf8")).version;
const scratch = mkdtempSync(join(tmpdir(), "mill-release-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");
const pins = readManifest();

test("SHA256SUMS lists every release file with its sha256", () => {
  const sums = readFileSync(join(release, "SHA256SUMS"), "utf8").trim().split("\n");
  const listed = new Map(sums.map((line) => line.split(/\s+/).reverse() as [string, string]));
  assert.deepEqual(
    [...listed.keys()].sort(),
    ["install.sh", "mill-linux-arm64", "mill-linux-x64"],
    "the release holds exactly these files",
  );
  for (const [file, digest] of listed) assert.equal(sha256(join(release, file)), digest, file);
});

/** The file an executable wrote into `runtime` for `name` (content-addressed, see assets.ts). */
function extracted(runtime: string, name: string): string {
  const [file] = readdirSync(runtime).filter((entry) => entry.startsWith(`${name}-`));
  assert.ok(file, `no ${name} was extracted into ${runtime}`);
  return join(runtime, file);
}

test("mill-linux-x64 embeds the pinned wireguard-go and Node, and says so", () => {
  const runtime = join(scratch, "runtime-x64");
  const executable = join(release, "mill-linux-x64");
  const doctor = spawnSync(executable, ["doctor"], {
    env: { MILL_RUNTIME_DIR: runtime },
    encoding: "utf8",
  });
  assert.equal(doctor.status, 0, doctor.stdout + doctor.stderr);
  const wireguard = findPin(pins, "wireguard-go", "x64");
  const node = findPin(pins, "node", "x64");
  assert.equal(sha256(extracted(runtime, "wireguard-go")), wireguard.sha256);
  assert.match(
    doctor.stdout,
    new RegExp(`runtime +node v${node.version} \\(embedded, linux-x64\\)`),
  );
  assert.match(
    doctor.stdout,
    new RegExp(`embedded +wireguard-go ${wireguard.version.replace("+", "\\+")}`),
  );
  const versions = spawnSync(executable, ["--version"], { env: {}, encoding: "utf8" });
  assert.equal(versions.status, 0, versions.stderr);
  assert.equal(
    versions.stdout,
    `mill ${version}\nnode v${node.version} (linux-x64)\nwireguard-go ${wireguard.version} from Debian ${
      wireguard.source.registry === "debian" ? wireguard.source.suite : ""
    } (reports ${wireguard.reports})\nprotocol ${PROTOCOL_VERSION.major}.${PROTOCOL_VERSION.minor} (works with nodes of protocol ${PROTOCOL_VERSION.major}.x)\n`,
  );
});

const qemu = ["qemu-aarch64-static", "qemu-aarch64"].find(
  (candidate) => spawnSync(candidate, ["--version"]).status === 0,
);
// The cross toolchain's arm64 glibc, libstdc++ and loader: what the Node runtime links against.
const ARM64_SYSROOT = "/usr/aarch64-linux-gnu";

describe("mill-linux-arm64 under qemu-user", () => {
  const executable = join(release, "mill-linux-arm64");
  const underQemu = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(qemu!, ["-L", ARM64_SYSROOT, executable, ...args], {
      env,
      encoding: "utf8",
      timeout: 120_000,
    });

  before(() => {
    assert.ok(qemu, "qemu-user is needed: apt-get install qemu-user-static");
  });

  test("--version names the arm64 Node and wireguard-go inside", () => {
    const result = underQemu(["--version"]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`^mill ${version}\nnode v[0-9.]+ \\(linux-arm64\\)\n`));
  });

  test("the embedded wireguard-go is the pinned arm64 build", () => {
    // Without binfmt_misc, qemu cannot start the helpers doctor runs; it extracts them first.
    const runtime = join(scratch, "runtime-arm64");
    underQemu(["doctor"], { MILL_RUNTIME_DIR: runtime });
    assert.equal(
      sha256(extracted(runtime, "wireguard-go")),
      findPin(pins, "wireguard-go", "arm64").sha256,
    );
  });

  test("a one-node `init --mesh none`, then `status`", async () => {
    const subnet = `127.${1 + Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`;
    const dataDir = join(scratch, "arm64-node");
    // --foreground keeps the node in this qemu process: a detached agent would be a new exec,
    // which qemu-user cannot follow without binfmt_misc.
    const node = spawn(
      qemu!,
      [
        "-L",
        ARM64_SYSROOT,
        executable,
        "init",
        "--mesh",
        "none",
        "--foreground",
        "--advertise",
        `${subnet}.1`,
        "--name",
        "arm64-node",
        "--data-dir",
        dataDir,
      ],
      { env: {}, stdio: ["ignore", "pipe", "pipe"] },
    );
    try {
      const output = await untilOutput(node, /Token: mill_t_/, 120_000);
      assert.match(output, /Token: mill_t_/);
      const status = underQemu(["status", "--json"], { MILL_DATA_DIR: dataDir });
      assert.equal(status.status, 0, status.stderr);
      const view = JSON.parse(status.stdout) as { nodes: { name: string; status: string }[] };
      assert.deepEqual(
        view.nodes.map((entry) => [entry.name, entry.status]),
        [["arm64-node", "ready"]],
      );
    } finally {
      node.kill("SIGKILL");
    }
  });
});

/** Resolves with everything the child printed once `pattern` shows up; rejects if it exits. */
function untilOutput(child: ChildProcess, pattern: RegExp, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let output = "";
    const timer = setTimeout(
      () => reject(new Error(`no ${pattern} within ${timeoutMs} ms:\n${output}`)),
      timeoutMs,
    );
    const onData = (chunk: Buffer) => {
      output += chunk;
      if (pattern.test(output)) {
        clearTimeout(timer);
        resolve(output);
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before ${pattern}:\n${output}`));
    });
  });
}

describe("install.sh against a loopback release server", () => {
  let server: Server;
  let url = "";
  /** Files the server answers with instead of dist/release's (a corrupted download). */
  const replaced = new Map<string, Buffer>();

  before(async () => {
    server = createServer((request, response) => {
      const name = (request.url ?? "/").slice(1);
      const path = join(release, name);
      if (!/^[\w.-]+$/.test(name) || !existsSync(path)) {
        response.writeHead(404).end();
        return;
      }
      response.writeHead(200).end(replaced.get(name) ?? readFileSync(path));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  /** A fake `uname` (and `id`) first on PATH, for the architecture and user under test. */
  function fakeTools(machine: string, uid: number): string {
    const bin = mkdtempSync(join(scratch, "bin-"));
    for (const [tool, body] of [
      ["uname", `[ "$1" = -m ] && echo ${machine} || echo Linux`],
      ["id", `echo ${uid}`],
    ] as const) {
      writeFileSync(join(bin, tool), `#!/bin/sh\n${body}\n`);
      chmodSync(join(bin, tool), 0o755);
    }
    return bin;
  }

  /** Runs install.sh without blocking this process, whose event loop serves the downloads. */
  function install(
    env: Record<string, string>,
    machine = "x86_64",
    uid = 0,
  ): Promise<{ status: number | null; stdout: string; stderr: string }> {
    const options = {
      env: { PATH: `${fakeTools(machine, uid)}:/usr/bin:/bin`, HOME: scratch, ...env },
      timeout: 60_000,
    };
    return new Promise((resolve) =>
      execFile("sh", [join(release, "install.sh")], options, (error, stdout, stderr) =>
        resolve({ status: error ? Number(error.code) : 0, stdout, stderr }),
      ),
    );
  }

  test("installs the verified executable, which runs, and prints the next command", async () => {
    const dir = join(scratch, "install-ok");
    const result = await install({ MILL_RELEASE_URL: url, MILL_INSTALL_DIR: dir });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(sha256(join(dir, "mill")), sha256(join(release, "mill-linux-x64")));
    const installed = spawnSync(join(dir, "mill"), ["--version"], { encoding: "utf8" });
    assert.match(installed.stdout, new RegExp(`^mill ${version}\n`));
    assert.match(result.stdout, new RegExp(`installed mill ${version} as ${dir}/mill`));
    assert.match(result.stdout, /next: .*mill init/);
    assert.deepEqual(readdirSync(dir), ["mill"], "no temporary file is left beside it");
  });

  test("without root and MILL_INSTALL_DIR it installs into ~/.local/bin", async () => {
    const home = mkdtempSync(join(scratch, "home-"));
    const result = await install({ MILL_RELEASE_URL: url, HOME: home }, "x86_64", 1000);
    assert.equal(result.status, 0, result.stderr);
    assert.ok(existsSync(join(home, ".local", "bin", "mill")));
    assert.match(result.stdout, /is not on your PATH/);
  });

  test("a corrupted download fails on its checksum and installs nothing", async () => {
    const dir = join(scratch, "install-corrupt");
    const bytes = readFileSync(join(release, "mill-linux-x64"));
    bytes[bytes.length >> 1] ^= 0xff;
    replaced.set("mill-linux-x64", bytes);
    try {
      const result = await install({ MILL_RELEASE_URL: url, MILL_INSTALL_DIR: dir });
      assert.equal(result.status, 1);
      assert.match(
        result.stderr,
        /^install\.sh: checksum mismatch for mill-linux-x64: .*nothing was installed\n$/,
      );
      assert.equal(existsSync(dir) && readdirSync(dir).length > 0, false, "nothing installed");
    } finally {
      replaced.clear();
    }
  });

  test("an architecture without a release fails with one clear line", async () => {
    const dir = join(scratch, "install-mips");
    const result = await install({ MILL_RELEASE_URL: url, MILL_INSTALL_DIR: dir }, "mips64");
    assert.equal(result.status, 1);
    assert.equal(
      result.stderr,
      "install.sh: no Mill release for this architecture (mips64): releases exist for x86_64 and aarch64\n",
    );
    assert.equal(existsSync(dir), false);
  });

  test("an unreachable release server fails with one clear line", async () => {
    const dir = join(scratch, "install-offline");
    // A port that was just free: nothing listens there.
    const closed = createServer();
    const free = await new Promise<number>((resolve) =>
      closed.listen(0, "127.0.0.1", () => {
        const { port } = closed.address() as AddressInfo;
        closed.close(() => resolve(port));
      }),
    );
    const result = await install({
      MILL_RELEASE_URL: `http://127.0.0.1:${free}`,
      MILL_INSTALL_DIR: dir,
    });
    assert.equal(result.status, 1);
    assert.match(
      result.stderr,
      new RegExp(
        `^install\\.sh: cannot download http://127\\.0\\.0\\.1:${free}/SHA256SUMS .*check the network and MILL_RELEASE_URL\\n$`,
      ),
    );
    assert.equal(existsSync(dir), false);
  });

  test("a release served without the file for this host fails clearly", async () => {
    const dir = join(scratch, "install-missing");
    mkdirSync(dir);
    const result = await install({
      MILL_RELEASE_URL: `${url}/nothing-here`,
      MILL_INSTALL_DIR: dir,
    });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /^install\.sh: cannot download .*nothing-here\/SHA256SUMS/);
    assert.deepEqual(readdirSync(dir), []);
  });
});
