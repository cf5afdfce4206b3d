/**
 * Executables Mill carries inside itself (the userspace WireGuard, the interface helper): where they
 * come from and the private runtime directory they are run from.
 * Owns: choosing, extracting and verifying those binaries. Must not touch: running them.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, lstat, mkdir, open, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { platform } from "./index.ts";
import type { AssetName } from "./types.ts";

export class AssetError extends Error {
  override name = "AssetError";
}

/** MILL_RUNTIME_DIR, else a per-user folder in the temp dir. */
export function runtimeDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.MILL_RUNTIME_DIR || join(tmpdir(), `mill-${process.getuid?.() ?? "user"}`);
}

/**
 * Creates the directory 0700 or checks that an existing one is ours and private, so nobody else can
 * swap a binary we are about to execute.
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
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

const OVERRIDES: Partial<Record<AssetName, string>> = { "wireguard-go": "MILL_WG_BINARY" };
const SYSTEM_FALLBACK: Partial<Record<AssetName, string>> = {
  "wireguard-go": "/usr/bin/wireguard-go",
};

/**
 * The path to run for an embedded executable: an explicit override (MILL_WG_BINARY), the copy
 * embedded in this build, the copy vendored in a source checkout, or the system's package.
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
  const system = SYSTEM_FALLBACK[name];
  if (system && existsSync(system)) return system;
  throw new AssetError(
    `no ${name} binary: this is a source checkout without a build; run \`npm run build\` first`,
  );
}
