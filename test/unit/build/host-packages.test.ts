import assert from "node:assert/strict";
import { test } from "node:test";
import { buildPackages, planInstall, toolchain } from "../../../build/host-packages.ts";

test("nothing missing: nothing to do", () => {
  assert.deepEqual(planInstall([], "the build", true), { kind: "nothing" });
  assert.deepEqual(planInstall([], "the build", false), { kind: "nothing" });
});

test("as root the missing packages are installed through apt, after an update", () => {
  const plan = planInstall(["musl-tools", "binutils"], "the build", true);
  assert.equal(plan.kind, "install");
  const commands = plan.kind === "install" ? plan.commands : [];
  assert.deepEqual(
    commands.map((command) => command.filter((arg) => !arg.startsWith("DPkg::") && arg !== "-o")),
    [
      ["apt-get", "update", "-qq"],
      ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "musl-tools", "binutils"],
    ],
  );
});

test("without root: one line naming the exact command, and nothing run", () => {
  const plan = planInstall(["musl-tools"], "the build", false);
  assert.deepEqual(plan, {
    kind: "ask",
    line: "missing Debian packages for the build: musl-tools; run: sudo apt-get update && sudo apt-get install -y --no-install-recommends musl-tools",
  });
});

test("the host's own target is built with musl; the other architecture with Debian's cross gcc", () => {
  assert.deepEqual(toolchain("x64", "x64"), {
    cc: "musl-gcc",
    strip: "strip",
    packages: ["musl-tools", "binutils"],
  });
  assert.deepEqual(toolchain("arm64", "x64"), {
    cc: "aarch64-linux-gnu-gcc",
    strip: "aarch64-linux-gnu-strip",
    packages: ["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross", "binutils-aarch64-linux-gnu"],
  });
  assert.equal(toolchain("x64", "arm64").cc, "x86_64-linux-gnu-gcc");
});

test("a release build needs both toolchains and the fetch tools, each package once", () => {
  const packages = buildPackages(["x64", "arm64"], "x64");
  assert.equal(new Set(packages).size, packages.length);
  for (const name of ["musl-tools", "gcc-aarch64-linux-gnu", "debian-archive-keyring", "apt"]) {
    assert.ok(packages.includes(name), name);
  }
  assert.ok(!buildPackages(["x64"], "x64").includes("gcc-aarch64-linux-gnu"));
});
