/**
 * Each allocation's directories on this node: DATA_DIR/allocs/<id>/ holds its pid record and its
 * output log (size-capped by copy-and-truncate into output.log.1), and is the agent's alone;
 * DATA_DIR-workloads/<id>/ is the process's working directory, owned by the workload user.
 * Finished allocations lose both, oldest first.
 * Owns: the files under DATA_DIR/allocs and DATA_DIR-workloads. Must not touch: processes,
 * cgroups, restart decisions.
 *
 * Decisions recorded here:
 * - The working directory is outside the data dir (a sibling: /var/lib/mill-workloads for
 *   /var/lib/mill), so nothing a workload can reach leads into the data dir, which stays 0700
 *   and root's. Its root is 0711: a workload finds its own directory but cannot list the others.
 * - An allocation id becomes a path component only once it is a positive safe integer.
 * Decisions recorded here:
 * - The pid record holds the kernel's start time of the process (/proc/<pid>/stat) beside its pid,
 *   so a pid reused by another process is never taken for ours. It is written to a temporary file
 *   and renamed, so a reader never sees half of one.
 * - The writer's O_APPEND descriptor survives the log's copy-and-truncate; lines written during the
 *   copy may be lost.
 */
import * as fs from "node:fs";
import { join, resolve } from "node:path";
import type { WorkloadUser } from "./workload-user.ts";

export interface PidRecord {
  readonly pid: number;
  readonly startTime: string;
  readonly specHash: string;
  readonly restarts: number;
}

/** How many finished allocations keep their directory (and so their logs). */
const KEPT_FINISHED_DIRS = 20;

/** Where the working directories of a node's allocations live: a sibling of its data dir. */
export function workRoot(dataDir: string): string {
  return `${resolve(dataDir)}-workloads`;
}

/** Throws unless `id` can name a directory: a positive safe integer, nothing else. */
export function checkAllocationId(id: number): void {
  if (!Number.isSafeInteger(id) || id <= 0) {
    throw new Error(`allocation id ${JSON.stringify(id)} is not a positive integer: refused`);
  }
}

export class AllocationDirs {
  readonly root: string;
  readonly workRoot: string;

  constructor(dataDir: string) {
    this.root = join(dataDir, "allocs");
    this.workRoot = workRoot(dataDir);
    fs.mkdirSync(this.root, { recursive: true, mode: 0o700 });
  }

  dir(id: number): string {
    checkAllocationId(id);
    return join(this.root, String(id));
  }

  workDir(id: number): string {
    checkAllocationId(id);
    return join(this.workRoot, String(id));
  }

  /** Creates the allocation's private directory (0700). */
  create(id: number): void {
    fs.mkdirSync(this.dir(id), { recursive: true, mode: 0o700 });
  }

  /** Creates the working directory (0700, owned by `user` when given) and returns it. */
  createWorkDir(id: number, user: WorkloadUser | undefined): string {
    fs.mkdirSync(this.workRoot, { recursive: true, mode: 0o711 });
    fs.chmodSync(this.workRoot, 0o711);
    const dir = this.workDir(id);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (user) fs.chownSync(dir, user.uid, user.gid);
    return dir;
  }

  readPid(id: number): PidRecord | undefined {
    try {
      const record = JSON.parse(fs.readFileSync(this.#pidPath(id), "utf8")) as PidRecord;
      const valid =
        Number.isSafeInteger(record.pid) &&
        record.pid > 1 &&
        typeof record.startTime === "string" &&
        typeof record.specHash === "string" &&
        Number.isSafeInteger(record.restarts);
      return valid ? record : undefined;
    } catch {
      return undefined;
    }
  }

  writePid(id: number, record: PidRecord): void {
    const path = this.#pidPath(id);
    fs.writeFileSync(`${path}.tmp`, JSON.stringify(record), { mode: 0o600 });
    fs.renameSync(`${path}.tmp`, path);
  }

  removePid(id: number): void {
    fs.rmSync(this.#pidPath(id), { force: true });
  }

  /** Opens the output log for appending; the caller closes the descriptor. */
  openLog(id: number): number {
    return fs.openSync(this.#logPath(id), "a", 0o600);
  }

  /** Moves the log to output.log.1 once it is larger than `capBytes`; throws when it cannot. */
  capLog(id: number, capBytes: number): void {
    const log = this.#logPath(id);
    if (fs.statSync(log).size <= capBytes) return;
    fs.copyFileSync(log, `${log}.1`);
    fs.truncateSync(log, 0);
  }

  /** The allocation ids that have a directory, in order. */
  ids(): number[] {
    return fs
      .readdirSync(this.root)
      .filter((name) => /^[1-9]\d*$/.test(name))
      .map(Number)
      .filter(Number.isSafeInteger)
      .sort((a, b) => a - b);
  }

  /**
   * Keeps the directories of the newest finished allocations (no pid record, not `inUse`); older
   * ones go.
   */
  pruneFinished(inUse: (id: number) => boolean): void {
    const finished = this.ids().filter((id) => !inUse(id) && !fs.existsSync(this.#pidPath(id)));
    for (const id of finished.slice(0, Math.max(0, finished.length - KEPT_FINISHED_DIRS))) {
      fs.rmSync(this.dir(id), { recursive: true, force: true });
      fs.rmSync(this.workDir(id), { recursive: true, force: true });
    }
  }

  #pidPath(id: number): string {
    return join(this.dir(id), "pid");
  }

  #logPath(id: number): string {
    return join(this.dir(id), "output.log");
  }
}
