/**
 * Each allocation's directory on this node, DATA_DIR/allocs/<id>/: its pid record, its output log
 * (size-capped by copy-and-truncate into output.log.1) and, once it is finished, its removal.
 * Owns: the files under DATA_DIR/allocs. Must not touch: processes, cgroups, restart decisions.
 *
 * Decisions recorded here:
 * - The pid record holds the kernel's start time of the process (/proc/<pid>/stat) beside its pid,
 *   so a pid reused by another process is never taken for ours. It is written to a temporary file
 *   and renamed, so a reader never sees half of one.
 * - The writer's O_APPEND descriptor survives the log's copy-and-truncate; lines written during the
 *   copy may be lost.
 */
import * as fs from "node:fs";
import { join } from "node:path";

export interface PidRecord {
  readonly pid: number;
  readonly startTime: string;
  readonly specHash: string;
  readonly restarts: number;
}

/** How many finished allocations keep their directory (and so their logs). */
const KEPT_FINISHED_DIRS = 20;

export class AllocationDirs {
  readonly root: string;

  constructor(dataDir: string) {
    this.root = join(dataDir, "allocs");
    fs.mkdirSync(this.root, { recursive: true, mode: 0o700 });
  }

  dir(id: number): string {
    return join(this.root, String(id));
  }

  /** Creates the allocation's directory (0700) and returns it. */
  create(id: number): string {
    const dir = this.dir(id);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
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
    }
  }

  #pidPath(id: number): string {
    return join(this.dir(id), "pid");
  }

  #logPath(id: number): string {
    return join(this.dir(id), "output.log");
  }
}
