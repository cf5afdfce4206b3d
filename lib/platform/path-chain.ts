/**
 * Whether a directory's parents can be trusted: every existing ancestor of the runtime dir and
 * the data dir must belong to root or to us, and must not be writable by group or others unless
 * its sticky bit is set (/tmp). Otherwise another user could rename our directory away and put
 * their own in its place, with binaries we would run or secrets we would trust.
 * Owns: that rule (pure, over an injected stat) and its one-line message. Must not touch: what
 * the directories hold.
 */
import * as fs from "node:fs";
import { basename, dirname, resolve } from "node:path";

export interface PathFacts {
  readonly uid: number;
  readonly mode: number;
}

const GROUP_OR_OTHER_WRITE = 0o022;
const STICKY = 0o1000;

/** The ancestors of `path` from the root down, `path` itself last. */
export function ancestors(path: string): string[] {
  const chain: string[] = [];
  for (let current = resolve(path); ; current = dirname(current)) {
    chain.unshift(current);
    if (dirname(current) === current) return chain;
  }
}

/**
 * Why `path`'s ancestors (not `path` itself) cannot be trusted by the user `uid`, or undefined.
 * `facts` answers undefined for a path that does not exist yet (it will be created private).
 */
export function chainProblem(
  path: string,
  uid: number,
  facts: (path: string) => PathFacts | undefined,
): string | undefined {
  for (const ancestor of ancestors(path).slice(0, -1)) {
    const info = facts(ancestor);
    if (!info) continue;
    if (info.uid !== 0 && info.uid !== uid) {
      return `${ancestor} (a parent of ${path}) belongs to uid ${info.uid}, who could replace what is under it; use a path whose parents are root's or yours (or run: chown ${uid} ${ancestor})`;
    }
    if (info.mode & GROUP_OR_OTHER_WRITE && !(info.mode & STICKY)) {
      const mode = (info.mode & 0o7777).toString(8).padStart(4, "0");
      return `${ancestor} (a parent of ${path}) is writable by other users (mode ${mode}), who could replace what is under it; run: chmod go-w ${ancestor}`;
    }
  }
  return undefined;
}

/**
 * chainProblem over the real file system: along the path as written (a symlink's own parent
 * decides who can swap it) and along where it really leads.
 */
export function realChainProblem(path: string, uid = process.getuid?.() ?? 0): string | undefined {
  return chainProblem(path, uid, lstatFacts) ?? chainProblem(realTarget(path), uid, lstatFacts);
}

/** `path` with its deepest existing ancestor resolved through symlinks. */
function realTarget(path: string): string {
  const chain = ancestors(path);
  for (let i = chain.length - 1; i >= 0; i--) {
    try {
      const real = fs.realpathSync(chain[i]!);
      return resolve(real, ...chain.slice(i + 1).map((part) => basename(part)));
    } catch {
      // not there yet: try its parent
    }
  }
  return path;
}

/** Facts of a path itself; a symlink has none of its own (its mode means nothing). */
function lstatFacts(path: string): PathFacts | undefined {
  try {
    const stats = fs.lstatSync(path);
    return stats.isSymbolicLink() ? undefined : { uid: stats.uid, mode: stats.mode };
  } catch {
    return undefined;
  }
}
