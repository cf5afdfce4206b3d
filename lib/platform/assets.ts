/**
 * Executables Mill carries inside itself (the userspace WireGuard, the interface helper): where they
 * come from, the private runtime directory they are run from, and the versions the build recorded.
 * Owns: choosing, extracting and verifying those binaries. Must not touch: running them.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { chmod, lstat, mkdir, open, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { platform } from "./index.ts";
import { realChainProblem } from "./path-chain.ts";
import type { AssetName } from "./types.ts";

export class AssetError extends Error {
  override name = "AssetError";
}

/**
 * The runtime dir by default: `/run/mill` as root, `$XDG_RUNTIME_DIR/mill` for a user session
 * that has one; undefined otherwise. Never a fixed name in a shared temp dir, which another
 * local user could create first.
 */
export function defaultRuntimeDir(
  uid: number | undefined,
  xdgRuntimeDir?: string,
): string | undefined {
  if (uid === 0) return "/run/mill";
  if (xdgRuntimeDir) return join(xdgRuntimeDir, "mill");
  return undefined;
}

let freshDir: string | undefined;

/** A private temp dir of this process's own (mkdtemp: unpredictable, 0700), removed at exit. */
function freshRuntimeDir(): string {
  if (freshDir) return freshDir;
  const dir = mkdtempSync(join(tmpdir(), "mill-"));
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  freshDir = dir;
  return dir;
}

/** MILL_RUNTIME_DIR, else the default one, else a fresh private temp dir. */
export function runtimeDir(env: NodeJS.ProcessEnv = process.env): string {
  return (
    env.MILL_RUNTIME_DIR ||
    defaultRuntimeDir(process.getuid?.(), env.XDG_RUNTIME_DIR) ||
    freshRuntimeDir()
  );
}

/**
 * Creates the directory 0700 or checks that an existing one is ours and private, and that no
 * other user can replace it through one of its parents, so nobody else can swap a binary we are
 * about to execute.
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
  const problem = realChainProblem(dir);
  if (problem) throw new AssetError(problem);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const info = await lstat(dir);
  const uid = process.getuid?.();
  if (!info.isDirectory()) {
    throw new AssetError(`${dir} is not a directory; remove it or set MILL_RUNTIME_DIR elsewhere`);
  }
  if (uid !== undefined && info.uid !== uid) {
    throw new AssetError(
      `${dir} belongs to uid ${info.uid}, not to you (uid ${uid}); remove it or set MILL_RUNTIME_DIR`,
    );
  }
  if ((info.mode & 0o077) !== 0) {
    throw new AssetError(
      `${dir} is readable by other users (mode ${(info.mode & 0o777).toString(8)}); run: chmod 700 ${dir}`,
    );
  }
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** Writes bytes to `dir/<name>-<sha256 prefix>` once (write, fsync, rename) and returns the path. */
export async function extractExecutable(
  dir: string,
  name: string,
  bytes: Uint8Array,
): Promise<string> {
  await ensurePrivateDir(dir);
  const digest = sha256(bytes);
  const target = join(dir, `${name}-${digest.slice(0, 16)}`);
  // Files appear here only by rename once complete, in a directory only we can write, so one of
  // the right size under the content's name is that content; re-hashing it cost every start ~0.2 s.
  if ((await stat(target).catch(() => undefined))?.size === bytes.length) return target;
  const temporary = `${target}.${process.pid}.tmp`;
  const file = await open(temporary, "w", 0o700);
  try {
    await file.writeFile(bytes);
    await file.sync();
  } finally {
    await file.close();
  }
  await chmod(temporary, 0o700);
  await rename(temporary, target).catch(async (error) => {
    await rm(temporary, { force: true });
    throw error;
  });
  return target;
}

/** What the build pinned into an executable (build/executable.ts writes it; see vendor/). */
export interface EmbeddedVersions {
  /** The Node runtime's version, without the "v". */
  readonly node: string;
  readonly arch: string;
  readonly wireguardGo: {
    /** The package's version. */
    readonly version: string;
    /** What the binary's --version says. */
    readonly reports: string;
    /** Where it came from, e.g. "Debian trixie". */
    readonly source: string;
  };
}

// Replaced by the build with a literal; absent when running from source.
declare const __MILL_EMBEDDED_VERSIONS__: EmbeddedVersions | undefined;

/** The versions recorded by the build of this executable, or undefined from source. */
export function embeddedVersions(): EmbeddedVersions | undefined {
  return typeof __MILL_EMBEDDED_VERSIONS__ === "undefined" ? undefined : __MILL_EMBEDDED_VERSIONS__;
}

const OVERRIDES: Partial<Record<AssetName, string>> = { "wireguard-go": "MILL_WG_BINARY" };

/**
 * The path to run for an embedded executable: an explicit override (MILL_WG_BINARY), the copy
 * embedded in this build, or the pinned copy the build left in a source checkout.
 */
export async function resolveBinary(
  name: AssetName,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  const overrideVariable = OVERRIDES[name];
  const override = overrideVariable ? env[overrideVariable] : undefined;
  if (override) {
    if (!existsSync(override)) {
      throw new AssetError(
        `${overrideVariable}=${override} does not exist; fix the path or unset it`,
      );
    }
    return override;
  }
  const embedded = platform.embeddedAsset(name);
  if (embedded) return extractExecutable(runtimeDir(env), name, embedded);
  const vendored = platform.sourceAssetPath(name);
  if (vendored && existsSync(vendored)) return vendored;
  throw new AssetError(
    `no ${name} binary: this is a source checkout without a build; run \`npm run build\` first`,
  );
}
