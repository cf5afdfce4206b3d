/**
 * Makes one Mill single executable for one target architecture: bundles main.ts with esbuild into
 * one CommonJS file, compiles the interface helper for the target, writes the SEA blob with the
 * pinned Node of the build host's architecture (the blob must come from the same Node version as
 * the runtime it is injected into), strips a copy of the target's pinned Node and injects the blob.
 * Owns: the steps from source to one executable. Must not touch: runtime behaviour, dist/ beyond
 * the output path it is given.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { buildNetifHelper } from "../lib/mesh/netif-build.ts";
import type { EmbeddedVersions } from "../lib/platform/assets.ts";
import type { ProtocolVersion } from "../lib/shared/protocol.ts";
import { toolchain } from "./host-packages.ts";
import { type Arch, findPin, type Pin, readManifest, vendoredFile } from "./vendor.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
// The postject fuse is a fixed, public constant of Node's SEA format.
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

/** Runs a build tool quietly; its output is shown only when it fails. */
function run(command: string, args: string[], cwd?: string): void {
  try {
    execFileSync(command, args, { stdio: "pipe", cwd });
  } catch (error) {
    const output = (error as { stderr?: Buffer }).stderr?.toString() ?? String(error);
    throw new Error(`${command} ${args.join(" ")} failed:\n${output}`);
  }
}

/**
 * Another Mill for the version-skew tests: its own Mill version and protocol version in place of
 * this source's (lib/shared/version.ts, lib/shared/protocol.ts). Never part of a release.
 */
export interface BuildVariant {
  readonly version: string;
  readonly protocol: ProtocolVersion;
}

async function bundle(
  outfile: string,
  nodeMajor: number,
  versions: EmbeddedVersions,
  variant: BuildVariant | undefined,
) {
  await build({
    entryPoints: [join(root, "main.ts")],
    outfile,
    bundle: true,
    platform: "node",
    format: "cjs",
    target: `node${nodeMajor}`,
    minifySyntax: true,
    legalComments: "none",
    logLevel: "warning",
    // cbor-x falls back to its pure-JS path when its optional native accelerator is absent.
    alias: { "cbor-extract": join(root, "build", "no-cbor-extract.cjs") },
    // The CommonJS bundle has no import.meta; give modules that ask a real file URL.
    banner: { js: 'var __import_meta_url = require("node:url").pathToFileURL(__filename).href;' },
    define: {
      "import.meta.url": "__import_meta_url",
      __MILL_EMBEDDED_VERSIONS__: JSON.stringify(versions),
      ...(variant && {
        __MILL_VERSION_VARIANT__: JSON.stringify(variant.version),
        __MILL_PROTOCOL_VARIANT__: JSON.stringify(variant.protocol),
      }),
    },
  });
}

/** The vendored inputs of one target, each verified against its pin. */
export interface TargetInputs {
  readonly node: string;
  readonly nodeVersion: string;
  readonly wireguard: string;
  readonly wireguardPin: Pin;
}

export function targetInputs(target: Arch): TargetInputs {
  const pins = readManifest();
  const nodePin = findPin(pins, "node", target);
  const wireguardPin = findPin(pins, "wireguard-go", target);
  return {
    node: vendoredFile(nodePin),
    nodeVersion: nodePin.version,
    wireguard: vendoredFile(wireguardPin),
    wireguardPin,
  };
}

export interface ExecutableOptions {
  readonly target: Arch;
  readonly host: Arch;
  readonly out: string;
  /**
   * A node binary of the host's architecture to use as both the runtime and the blob writer instead
   * of the pinned one (the start-up benchmark builds yesterday's Node 20 executable this way).
   */
  readonly runtimeOverride?: { readonly node: string; readonly version: string };
  /** A second Mill for the version-skew tests (test/e2e/version-skew.test.ts). */
  readonly variant?: BuildVariant;
}

/** Builds the executable at `out` (replaced by a rename, so readers never see half a file). */
export async function buildExecutable(options: ExecutableOptions): Promise<void> {
  const { target, host } = options;
  const inputs = targetInputs(target);
  const runtime = options.runtimeOverride ?? { node: inputs.node, version: inputs.nodeVersion };
  const blobWriter = options.runtimeOverride?.node ?? targetInputs(host).node;
  const tools = toolchain(target, host);
  const work = mkdtempSync(join(dirname(options.out), ".build-"));
  try {
    const netif = join(work, "mill-netif");
    await buildNetifHelper(netif, { cc: tools.cc, package: tools.packages[0]! });
    const bundlePath = join(work, "mill.cjs");
    const pin = inputs.wireguardPin;
    const embedded: EmbeddedVersions = {
      node: runtime.version,
      arch: target,
      wireguardGo: {
        version: pin.version,
        reports: pin.reports ?? pin.version,
        source:
          pin.source.registry === "debian" ? `Debian ${pin.source.suite}` : pin.source.registry,
      },
    };
    await bundle(bundlePath, Number(runtime.version.split(".")[0]), embedded, options.variant);
    const blob = join(work, "mill.blob");
    const seaConfig = join(work, "sea-config.json");
    // Paths relative to the work dir: the blob records the main script's path as given, and a
    // random folder name in it would make two builds of one commit differ.
    writeFileSync(
      seaConfig,
      JSON.stringify({
        main: "mill.cjs",
        output: "mill.blob",
        disableExperimentalSEAWarning: true,
        // V8's code cache only loads on the architecture that wrote it (saves ~10 ms of start-up);
        // a cross-built target gets a portable blob without one.
        useCodeCache: target === host,
        assets: { "wireguard-go": inputs.wireguard, "mill-netif": "mill-netif" },
      }),
    );
    run(blobWriter, ["--experimental-sea-config", seaConfig], work);
    const staged = join(work, "mill");
    copyFileSync(runtime.node, staged);
    // Strip before injecting: stripping an injected binary corrupts the blob.
    run(tools.strip, [staged]);
    run(join(root, "node_modules", ".bin", "postject"), [
      staged,
      "NODE_SEA_BLOB",
      blob,
      "--sentinel-fuse",
      SEA_FUSE,
    ]);
    renameSync(staged, options.out);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
