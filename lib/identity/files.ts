/**
 * Secret files (token, TLS key, WireGuard private key, node config): 0600 files in 0700
 * directories owned by the current user, replaced atomically (temp file, fsync, rename, fsync of
 * the directory) so a crash leaves the old or the new content, never a torn file.
 * Owns: permission checks and the write protocol. Must not touch: what the files contain.
 * Loose permissions are refused, not repaired: they mean someone else may already have read the
 * secret, which the operator should know about.
 */

import { randomBytes } from "node:crypto";
import type { Stats } from "node:fs";
import { chmod, lstat, mkdir, open, readFile, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import process from "node:process";

export class SecretFileError extends Error {
  override name = "SecretFileError";
}

function currentUid(): number {
  return process.getuid?.() ?? 0;
}

function octal(mode: number): string {
  return (mode & 0o777).toString(8).padStart(4, "0");
}

/** Refuses a file or directory that is not ours or that group or others can reach. */
function checkPrivate(path: string, stats: Stats, kind: "file" | "directory"): void {
  const uid = currentUid();
  if (stats.uid !== uid) {
    throw new SecretFileError(
      `secret ${kind} ${path} is owned by uid ${stats.uid}, not by the current user (uid ${uid}); run: chown ${uid} ${path}`,
    );
  }
  if (stats.mode & 0o077) {
    const fix = kind === "file" ? "600" : "700";
    throw new SecretFileError(
      `secret ${kind} ${path} is accessible to group or others (mode ${octal(stats.mode)}); run: chmod ${fix} ${path}`,
    );
  }
}

function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === "ENOENT";
}

/** Creates `dir` (and missing parents) as 0700, or checks that an existing one is ours and 0700-tight. */
export async function ensureSecretDir(dir: string): Promise<void> {
  let stats: Stats;
  try {
    // stat, not lstat: a data directory that is a symlink to another disk is an admin's choice.
    stats = await stat(dir);
  } catch (error) {
    if (!isMissing(error)) throw error;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // The umask may only remove bits; set the mode exactly so it does not depend on it.
    await chmod(dir, 0o700);
    stats = await stat(dir);
  }
  if (!stats.isDirectory()) {
    throw new SecretFileError(`secret directory ${dir} exists but is not a directory`);
  }
  checkPrivate(dir, stats, "directory");
}

/** lstat of an existing secret file, checked; undefined when there is none. */
async function checkExistingFile(path: string): Promise<Stats | undefined> {
  let stats: Stats;
  try {
    stats = await lstat(path);
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
  // A symlink could point the write (or the read) somewhere the operator did not intend.
  if (!stats.isFile()) {
    throw new SecretFileError(`secret file ${path} is not a regular file; remove it and retry`);
  }
  checkPrivate(path, stats, "file");
  return stats;
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Atomically replaces `path` with `content` as a 0600 file; the directory is created or checked first. */
export async function writeSecretFile(path: string, content: string | Uint8Array): Promise<void> {
  const dir = dirname(path);
  await ensureSecretDir(dir);
  await checkExistingFile(path);
  const temp = join(dir, `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  const handle = await open(temp, "wx", 0o600);
  try {
    try {
      await handle.chmod(0o600);
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (error) {
    // Leave nothing behind; the temp file may already be gone if rename got that far.
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  await syncDirectory(dir);
}

/** The UTF-8 content of a secret file, after checking it and its directory. */
export async function readSecretFile(path: string): Promise<string> {
  try {
    checkPrivate(dirname(path), await stat(dirname(path)), "directory");
  } catch (error) {
    if (isMissing(error)) throw new SecretFileError(`secret file ${path} does not exist`);
    throw error;
  }
  if (!(await checkExistingFile(path))) {
    throw new SecretFileError(`secret file ${path} does not exist`);
  }
  return readFile(path, "utf8");
}
