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
/** The most output one read returns; a reader asks again from the offset it got. */
export const LOG_CHUNK_BYTES = 64 * 1024;
/** How far back from the end a `tail` looks for its lines. */
const TAIL_WINDOW_BYTES = 1024 * 1024;

/** The most lines `tail` may ask for. */
export const MAX_TAIL_LINES = 100_000;

/** The log request in a query string (`from`, `tail`), checked; a problem names the field. */
export function parseLogRequest(
  query: Readonly<Record<string, string | undefined>>,
): { ok: true; value: LogRequest } | { ok: false; field: string; error: string } {
  const number = (field: string, max: number) => {
    const text = query[field];
    if (text === undefined) return undefined;
    const value = /^\d{1,16}$/.test(text) ? Number(text) : Number.NaN;
    return Number.isSafeInteger(value) && value <= max ? value : null;
  };
  const from = number("from", Number.MAX_SAFE_INTEGER);
  if (from === null) return { ok: false, field: "from", error: "from must be a byte offset" };
  const tail = number("tail", MAX_TAIL_LINES);
  if (tail === null || tail === 0) {
    return {
      ok: false,
      field: "tail",
      error: `tail must be a line count from 1 to ${MAX_TAIL_LINES}`,
    };
  }
  return {
    ok: true,
    value: { ...(from === undefined ? {} : { from }), ...(tail === undefined ? {} : { tail }) },
  };
}

/** A log request as the query string parseLogRequest reads. */
export function logQuery(request: LogRequest): string {
  return new URLSearchParams(
    Object.entries(request).map(([key, value]): [string, string] => [key, String(value)]),
  ).toString();
}

/** What a reader asks of an output log: from a byte offset, or its last `tail` lines. */
export interface LogRequest {
  readonly from?: number;
  readonly tail?: number;
}

/** A piece of an output log: `text` from `start` up to `offset`, of a log now `size` long. */
export interface LogChunk {
  readonly text: string;
  readonly start: number;
  readonly offset: number;
  readonly size: number;
}

/**
 * Where a read starts: `tail` lines before the end (within `window`, the bytes before `size`
 * that the caller holds), else `from`, or 0 when the log is shorter than `from` (it was rotated).
 */
export function logStart(request: LogRequest, size: number, window: Uint8Array): number {
  if (request.tail === undefined) {
    const from = request.from ?? 0;
    return from > size ? 0 : from;
  }
  // A last line without its newline counts as a line too.
  let end = window.length;
  if (end > 0 && window[end - 1] === 0x0a) end--;
  let lines = 0;
  for (let i = end - 1; i >= 0; i--) {
    if (window[i] !== 0x0a) continue;
    if (++lines === request.tail) return size - window.length + i + 1;
  }
  return size - window.length;
}

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

  /** A chunk of the allocation's output log; undefined when this node has none for it. */
  readLog(id: number, request: LogRequest): LogChunk | undefined {
    let fd: number;
    try {
      fd = fs.openSync(this.#logPath(id), "r");
    } catch {
      return undefined;
    }
    try {
      const size = fs.fstatSync(fd).size;
      let start = request.from ?? 0;
      if (request.tail !== undefined) {
        const window = Buffer.alloc(Math.min(size, TAIL_WINDOW_BYTES));
        fs.readSync(fd, window, 0, window.length, size - window.length);
        start = logStart(request, size, window);
      } else {
        start = logStart(request, size, new Uint8Array());
      }
      const bytes = Buffer.alloc(Math.min(LOG_CHUNK_BYTES, size - start));
      const read = fs.readSync(fd, bytes, 0, bytes.length, start);
      return { text: bytes.subarray(0, read).toString("utf8"), start, offset: start + read, size };
    } finally {
      fs.closeSync(fd);
    }
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
