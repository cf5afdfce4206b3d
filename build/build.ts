/**
 * `npm run build`: `dist/mill`, the single executable for this host's architecture (see
 * ./executable.ts), built from the pinned Node runtime and wireguard-go of vendor/manifest.json. It
 * also leaves this architecture's pinned wireguard-go and interface helper in vendor/cache/bin/ for
 * running Mill from source. Missing Debian packages are installed first (./host-packages.ts).
 * Owns: dist/mill, vendor/cache/bin/. Must not touch: runtime behaviour.
 */
import { copyFileSync, mkdirSync, renameSync, statSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { buildNetifHelper } from "../lib/mesh/netif-build.ts";
import { errorMessage } from "../lib/shared/errors.ts";
import { buildExecutable, targetInputs } from "./executable.ts";
import { buildPackages, ensurePackages, hostArch, toolchain } from "./host-packages.ts";
import type { Arch } from "./vendor.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
export const dist = join(root, "dist");

/** Copies `from` to `to` through a temporary name, so a reader never sees half a file. */
export function replaceFile(from: string, to: string): void {
  copyFileSync(from, `${to}.${process.pid}`);
  renameSync(`${to}.${process.pid}`, to);
}

/** The host's pinned binaries where `mill` run from source (tsx, deno) looks for them. */
async function sourceBinaries(host: Arch): Promise<void> {
  const bin = join(root, "vendor", "cache", "bin");
  mkdirSync(bin, { recursive: true });
  replaceFile(targetInputs(host).wireguard, join(bin, "wireguard-go"));
  const netif = join(bin, "mill-netif");
  const tools = toolchain(host, host);
  await buildNetifHelper(`${netif}.${process.pid}`, { cc: tools.cc, package: tools.packages[0]! });
  renameSync(`${netif}.${process.pid}`, netif);
}

export function fileSize(path: string): string {
  const bytes = statSync(path).size;
  return bytes < 2 ** 20
    ? `${(bytes / 1024).toFixed(1)} KiB`
    : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** Fails with one line (the fix) instead of a stack trace. */
export async function main(work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (error) {
    process.stderr.write(`build failed: ${errorMessage(error)}\n`);
    process.exitCode = 1;
  }
}

/** What every build does first: the host's packages, dist/, the binaries for source runs. */
export async function prepare(targets: readonly Arch[], purpose: string): Promise<Arch> {
  const host = hostArch();
  ensurePackages(buildPackages(targets, host), purpose);
  mkdirSync(dist, { recursive: true });
  await sourceBinaries(host);
  return host;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await main(async () => {
    const host = await prepare([hostArch()], "the build");
    const executable = join(dist, "mill");
    await buildExecutable({ target: host, host, out: executable });
    process.stdout.write(`built dist/mill (${fileSize(executable)})\n`);
  });
}
