/**
 * A fresh machine: `.ci/run` and the build, on a host where Debian packages are missing, install
 * them through build/host-packages.ts (as root) or name the exact command (otherwise). dpkg-query,
 * apt-get and npm are recording stubs on PATH, so the host's packages are never touched; what the
 * stubs record is the sequence a fresh machine would run.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { buildPackages, hostArch, TEST_PACKAGES } from "../../../build/host-packages.ts";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const isRoot = process.getuid?.() === 0;
const scratch = mkdtempSync(join(tmpdir(), "mill-fresh-host-"));
chmodSync(scratch, 0o755);
after(() => rmSync(scratch, { recursive: true, force: true }));

/** A host where every package is installed except `missing`; apt-get installs or fails as told. */
function freshHost(missing: readonly string[], aptInstall: "works" | "fails") {
  const dir = mkdtempSync(join(scratch, "host-"));
  const bin = join(dir, "bin");
  const installed = join(dir, "installed");
  const log = join(dir, "log");
  const everything = [...TEST_PACKAGES, ...buildPackages(["x64", "arm64"], hostArch())];
  writeFileSync(installed, `${everything.filter((name) => !missing.includes(name)).join("\n")}\n`);
  writeFileSync(log, "");
  const stubs: Record<string, string> = {
    // dpkg-query -W -f=FORMAT NAME: "ii " for an installed package, as dpkg prints it.
    "dpkg-query": `name="$3"; grep -qx "$name" "${installed}" || { echo "dpkg-query: no packages found matching $name" >&2; exit 1; }; printf 'ii '`,
    "apt-get": `echo "apt-get $*" >> "${log}"
case " $* " in *" install "*)
  ${aptInstall === "fails" ? `echo "E: Unable to locate package $(echo "$*" | awk '{print $NF}')" >&2; exit 100` : `for arg in "$@"; do case "$arg" in -*|install|DPkg::*) ;; *) echo "$arg" >> "${installed}";; esac; done`};;
esac`,
    npm: `echo "npm $*" >> "${log}"`,
  };
  spawnSync("mkdir", [bin]);
  for (const [name, body] of Object.entries(stubs)) {
    writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  }
  // Another user must reach the stubs and write the log (the "without root" case).
  for (const path of [dir, bin]) chmodSync(path, 0o755);
  for (const path of [log, installed]) chmodSync(path, 0o666);
  return {
    run(command: string, args: readonly string[], asUser?: number) {
      const env = {
        PATH: `${bin}:${process.env.PATH}`,
        HOME: dir,
        MILL_VENDOR_CACHE: join(dir, "cache"),
      };
      const spawn = (argv: readonly string[]) => {
        const full =
          asUser === undefined
            ? argv
            : ["setpriv", `--reuid=${asUser}`, `--regid=${asUser}`, "--clear-groups", ...argv];
        return spawnSync(full[0]!, full.slice(1), {
          cwd: REPO,
          encoding: "utf8",
          env,
          timeout: 120_000,
        });
      };
      // The real npm or apt-get must never run here: the stubs must be what this user finds.
      const found = spawn([
        "sh",
        "-c",
        "for name in npm apt-get dpkg-query; do command -v $name; done",
      ]);
      assert.deepEqual(
        found.stdout.trim().split("\n"),
        ["npm", "apt-get", "dpkg-query"].map((name) => join(bin, name)),
      );
      return spawn([command, ...args]);
    },
    log: () => readFileSync(log, "utf8").trim().split("\n").filter(Boolean),
  };
}

const LOCK = "-o DPkg::Lock::Timeout=300";

describe("`.ci/run` on a host without the test packages", () => {
  it("as root: installs exactly the missing ones through apt, between npm ci and npm test", {
    skip: !isRoot && "needs root",
  }, () => {
    const host = freshHost(["iperf3", "systemd"], "works");
    const result = host.run(join(REPO, ".ci/run"), []);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stderr, /^installing Debian packages for the test: iperf3 systemd$/m);
    assert.deepEqual(host.log(), [
      "npm ci --no-audit --no-fund",
      `apt-get ${LOCK} update -qq`,
      `apt-get ${LOCK} install -y -qq --no-install-recommends iperf3 systemd`,
      "npm test",
    ]);
  });

  it("without root: one line naming the exact command; nothing installed, no tests run", {
    skip: !isRoot && "needs root to switch user",
  }, () => {
    const host = freshHost(["iperf3", "systemd"], "works");
    const result = host.run(join(REPO, ".ci/run"), [], 65534);
    assert.equal(result.status, 1);
    assert.equal(
      result.stderr.trim(),
      "missing Debian packages for the test: iperf3 systemd; run: sudo apt-get update && sudo apt-get install -y --no-install-recommends iperf3 systemd",
    );
    assert.deepEqual(host.log(), ["npm ci --no-audit --no-fund"]);
  });
});

describe("`npm run build` on a host without musl-tools", { skip: !isRoot && "needs root" }, () => {
  it("asks apt for it before building, and stops with apt's one line when apt cannot", () => {
    const host = freshHost(["musl-tools"], "fails");
    const result = host.run(process.execPath, ["--import", "tsx", "build/build.ts"]);
    assert.equal(result.status, 1);
    assert.deepEqual(host.log(), [
      `apt-get ${LOCK} update -qq`,
      `apt-get ${LOCK} install -y -qq --no-install-recommends musl-tools`,
    ]);
    assert.match(
      result.stderr.trim().split("\n").at(-1)!,
      /^build failed: apt-get .* install .* musl-tools failed: E: Unable to locate package musl-tools$/,
    );
  });
});
