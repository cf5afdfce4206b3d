/**
 * The Debian packages the build and the tests need on the build host, and getting them: through
 * apt when we run as root, otherwise one line naming the exact command. `npm run build`,
 * `npm run release` and `.ci/run` all come through here, so CI proves the path a fresh machine takes.
 * Also the C toolchain and strip for each target architecture, since those are what the packages
 * are for. Run as a script (`node --import tsx build/host-packages.ts test`) it ensures a group.
 * Owns: deciding what is missing and installing it. Must not touch: apt's sources or the
 * packages it did not find missing.
 */
import { execFileSync, spawnSync } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { errorMessage } from "../lib/shared/errors.ts";
import type { Arch } from "./vendor.ts";

export class HostPackagesError extends Error {
  override name = "HostPackagesError";
}

/** How the interface helper is compiled and the executable stripped for one target. */
export interface Toolchain {
  /** A static C compiler for the target. */
  readonly cc: string;
  /** strip for the target's ELF files. */
  readonly strip: string;
  /** The Debian packages that provide both. */
  readonly packages: readonly string[];
}

/**
 * For the host's own architecture musl's gcc wrapper (a ~40 KB static helper); across
 * architectures Debian's cross gcc with its glibc, linked statically (Debian 12 has no musl cross
 * compiler without enabling a foreign dpkg architecture on the host).
 */
export function toolchain(target: Arch, host: Arch): Toolchain {
  if (target === host)
    return { cc: "musl-gcc", strip: "strip", packages: ["musl-tools", "binutils"] };
  const triplet = target === "arm64" ? "aarch64-linux-gnu" : "x86-64-linux-gnu";
  const gnu = target === "arm64" ? "aarch64-linux-gnu" : "x86_64-linux-gnu";
  const libc = target === "arm64" ? "libc6-dev-arm64-cross" : "libc6-dev-amd64-cross";
  return {
    cc: `${gnu}-gcc`,
    strip: `${gnu}-strip`,
    packages: [`gcc-${triplet}`, libc, `binutils-${triplet}`],
  };
}

/** Packages every build needs besides the toolchains: fetching and unpacking the vendor pins. */
const FETCH_PACKAGES = ["apt", "dpkg", "tar", "debian-archive-keyring"];

/** Everything `npm run build` (targets = [host]) or `npm run release` needs. */
export function buildPackages(targets: readonly Arch[], host: Arch): string[] {
  const toolchains = targets.flatMap((target) => toolchain(target, host).packages);
  return [...new Set([...FETCH_PACKAGES, ...toolchains])];
}

/**
 * What the test suites run beside the build: WireGuard tools and the system's wireguard-go (the
 * previous binary benchmarks compare against), iproute2, tcpdump, nftables, iperf3, setpriv/capsh,
 * busybox, etcd for the Raft comparison, systemd-analyze for the unit, qemu for the arm64
 * executable, curl for install.sh.
 */
export const TEST_PACKAGES: readonly string[] = [
  "wireguard-go",
  "wireguard-tools",
  "iproute2",
  "tcpdump",
  "nftables",
  "iperf3",
  "libcap2-bin",
  "util-linux",
  "busybox",
  "etcd-server",
  "etcd-client",
  "systemd",
  "qemu-user-static",
  "curl",
];

export type InstallPlan =
  | { readonly kind: "nothing" }
  | { readonly kind: "install"; readonly commands: readonly (readonly string[])[] }
  | { readonly kind: "ask"; readonly line: string };

/** What to do about `missing` packages needed for `purpose`: install them as root, else ask. */
export function planInstall(
  missing: readonly string[],
  purpose: string,
  isRoot: boolean,
): InstallPlan {
  if (missing.length === 0) return { kind: "nothing" };
  if (!isRoot) {
    return {
      kind: "ask",
      line: `missing Debian packages for ${purpose}: ${missing.join(" ")}; run: sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing.join(" ")}`,
    };
  }
  // Another apt on the host (a colleague's build, unattended upgrades) holds the lock for a while.
  const lock = ["-o", "DPkg::Lock::Timeout=300"];
  return {
    kind: "install",
    commands: [
      ["apt-get", ...lock, "update", "-qq"],
      ["apt-get", ...lock, "install", "-y", "-qq", "--no-install-recommends", ...missing],
    ],
  };
}

/** The packages of `names` that dpkg does not list as installed. */
export function missingPackages(names: readonly string[]): string[] {
  return names.filter((name) => {
    // dpkg-query's own field syntax, not a template: "ii " means installed.
    const format = "-f=$" + "{db:Status-Abbrev}";
    const query = spawnSync("dpkg-query", ["-W", format, name], {
      encoding: "utf8",
    });
    if (query.error) {
      throw new HostPackagesError(
        `dpkg-query cannot run (${query.error.message}): the build needs a Debian or Ubuntu host with these packages: ${names.join(" ")}`,
      );
    }
    return !query.stdout.startsWith("ii");
  });
}

/** Makes sure `names` are installed, installing them through apt when we are root. */
export function ensurePackages(names: readonly string[], purpose: string): void {
  const missing = missingPackages(names);
  const plan = planInstall(missing, purpose, process.getuid?.() === 0);
  if (plan.kind === "nothing") return;
  if (plan.kind === "ask") throw new HostPackagesError(plan.line);
  process.stderr.write(`installing Debian packages for ${purpose}: ${missing.join(" ")}\n`);
  for (const [command, ...args] of plan.commands) {
    try {
      execFileSync(command!, args, {
        stdio: ["ignore", "ignore", "pipe"],
        env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
      });
    } catch (error) {
      const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim() ?? "";
      throw new HostPackagesError(
        `${command} ${args.join(" ")} failed: ${stderr.split("\n").at(-1) || String(error)}`,
      );
    }
  }
  const still = missingPackages(names);
  if (still.length > 0) {
    throw new HostPackagesError(`apt-get did not install: ${still.join(" ")}`);
  }
}

export function hostArch(): Arch {
  if (process.arch === "x64" || process.arch === "arm64") return process.arch;
  throw new HostPackagesError(
    `building on ${process.arch} is not supported: build on an x64 or arm64 Linux host`,
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const groups: Record<string, () => readonly string[]> = {
    build: () => buildPackages([hostArch()], hostArch()),
    release: () => buildPackages(["x64", "arm64"], hostArch()),
    test: () => TEST_PACKAGES,
  };
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((group) => !(group in groups));
  if (wanted.length === 0 || unknown.length > 0) {
    process.stderr.write(
      `usage: node --import tsx build/host-packages.ts ${Object.keys(groups).join("|")}...\n`,
    );
    process.exit(2);
  }
  try {
    for (const group of wanted) ensurePackages(groups[group]!(), `the ${group}`);
  } catch (error) {
    process.stderr.write(`${errorMessage(error)}\n`);
    process.exit(1);
  }
}
