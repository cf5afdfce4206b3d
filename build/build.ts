/**
 * `npm run build`: bundles main.ts with esbuild into one CommonJS file, vendors the userspace
 * WireGuard and builds the interface helper, then makes `dist/mill`, a stripped Node single
 * executable application that carries the bundle and both binaries as assets.
 * Owns: the release artefact. Must not touch: runtime behaviour.
 */
import { execFileSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { buildNetifHelper } from "../lib/mesh/netif-build.ts";

const root = new URL("..", import.meta.url).pathname;
const dist = join(root, "dist");
const vendorBin = join(root, "vendor", "bin");
const executable = join(dist, "mill");
// The postject fuse is a fixed, public constant of Node's SEA format.
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

/** Runs a build tool quietly; its output is shown only when it fails. */
function run(command: string, args: string[]): void {
  try {
    execFileSync(command, args, { stdio: "pipe" });
  } catch (error) {
    const output = (error as { stderr?: Buffer }).stderr?.toString() ?? "";
    throw new Error(`${command} ${args.join(" ")} failed:\n${output}`);
  }
}

/** wireguard-go from Debian: the installed one, else the package unpacked into vendor/. */
function vendorWireguard(): string {
  const target = join(vendorBin, "wireguard-go");
  const installed = "/usr/bin/wireguard-go";
  if (existsSync(installed)) {
    copyFileSync(installed, `${target}.${process.pid}`);
    renameSync(`${target}.${process.pid}`, target);
    return target;
  }
  const work = mkdtempSync(join(tmpdir(), "mill-wg-"));
  try {
    execFileSync("apt-get", ["download", "wireguard-go"], { cwd: work, stdio: "ignore" });
    const deb = execFileSync("sh", ["-c", "ls *.deb"], { cwd: work }).toString().trim();
    run("dpkg-deb", ["-x", join(work, deb), join(work, "root")]);
    copyFileSync(join(work, "root", "usr", "bin", "wireguard-go"), target);
  } catch {
    throw new Error(
      "wireguard-go is not installed and Debian's package could not be downloaded; run: apt-get install wireguard-go",
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return target;
}

async function bundle(outfile: string): Promise<void> {
  await build({
    entryPoints: [join(root, "main.ts")],
    outfile,
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    minifySyntax: true,
    legalComments: "none",
    logLevel: "warning",
    // cbor-x falls back to its pure-JS path when its optional native accelerator is absent.
    alias: { "cbor-extract": join(root, "build", "no-cbor-extract.cjs") },
    // The CommonJS bundle has no import.meta; give modules that ask a real file URL.
    banner: { js: 'var __import_meta_url = require("node:url").pathToFileURL(__filename).href;' },
    define: { "import.meta.url": "__import_meta_url" },
  });
}

async function main(): Promise<void> {
  mkdirSync(dist, { recursive: true });
  mkdirSync(vendorBin, { recursive: true });
  const wireguard = vendorWireguard();
  const netif = join(vendorBin, "mill-netif");
  await buildNetifHelper(`${netif}.${process.pid}`);
  renameSync(`${netif}.${process.pid}`, netif);

  // Intermediate files live in a private folder and dist/mill is replaced by a rename, so two
  // builds running at once (helpers, CI) never see each other's half-written files.
  const work = mkdtempSync(join(dist, ".build-"));
  try {
    const bundlePath = join(work, "mill.cjs");
    await bundle(bundlePath);
    const blob = join(work, "mill.blob");
    const seaConfig = join(work, "sea-config.json");
    writeFileSync(
      seaConfig,
      JSON.stringify({
        main: bundlePath,
        output: blob,
        disableExperimentalSEAWarning: true,
        useCodeCache: true,
        assets: { "wireguard-go": wireguard, "mill-netif": netif },
      }),
    );
    run(process.execPath, ["--experimental-sea-config", seaConfig]);
    const staged = join(work, "mill");
    copyFileSync(process.execPath, staged);
    // Strip before injecting: stripping an injected binary corrupts the blob.
    run("strip", [staged]);
    run(join(root, "node_modules", ".bin", "postject"), [
      staged,
      "NODE_SEA_BLOB",
      blob,
      "--sentinel-fuse",
      SEA_FUSE,
    ]);
    renameSync(staged, executable);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const megabytes = (statSync(executable).size / 2 ** 20).toFixed(1);
  process.stdout.write(`built dist/mill (${megabytes} MiB)\n`);
}

await main();
