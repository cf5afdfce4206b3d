/**
 * The node's supervisor: runs the allocations the cluster assigned to this node as child
 * processes, restarts them with back-off, adopts them across agent restarts, stops the rest.
 * Owns: processes, their process groups, pid files, log files and cgroups under
 * DATA_DIR/allocs/<id>/. Must not touch: the replicated state (it is told what to run through
 * reconcile() and reports through onStatus), the network.
 *
 * Decisions recorded here:
 * - Each allocation runs detached in its own process group (pgid = pid), so a stop signals the
 *   whole tree and the agent can exit or crash without taking its workloads along.
 * - stdout and stderr go straight to DATA_DIR/allocs/<id>/output.log (opened for append), not
 *   through a pipe: an adopted process keeps logging after the agent that started it is gone.
 *   The size cap is kept by copy-and-truncate into output.log.1, which the writer's O_APPEND
 *   descriptor survives; lines written during the copy may be lost.
 * - A pid file records the pid and the kernel's start time of the process (/proc/<pid>/stat), so
 *   a pid reused by another process is never adopted or signalled as ours.
 * - The process gets PATH, MILL_ALLOCATION_ID, MILL_WORKLOAD and the spec's env, never the
 *   agent's own environment, which may hold the cluster token.
 * - reconcile() stops what is not desired before it starts anything, so a node that comes back
 *   from NodeDown stops its stale processes before it takes new work.
 */

import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { join } from "node:path";
import process from "node:process";
import type { DesiredAllocation, ReportedStatus } from "./state.ts";

export interface SupervisorClock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface SpawnRequest {
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string;
  /** Descriptor of the log file, for both stdout and stderr. */
  readonly logFd: number;
}

export interface ChildHandle {
  readonly pid: number;
  /** Called once, when the process exits. */
  onExit(listener: () => void): void;
}

/** The operating system as the supervisor sees it; tests pass a fake. */
export interface ProcessHost {
  /** Resolves once the process runs; rejects when it cannot start (e.g. ENOENT). */
  spawn(request: SpawnRequest): Promise<ChildHandle>;
  /** The kernel's start time of a live process, undefined when it is gone or a zombie. */
  startTime(pid: number): string | undefined;
  /** Whether any process of the group is left. */
  groupAlive(pgid: number): boolean;
  killGroup(pgid: number, signal: "SIGTERM" | "SIGKILL"): void;
}

export interface StatusUpdate {
  readonly id: number;
  readonly status: ReportedStatus;
  readonly restarts: number;
}

export interface SupervisorLogger {
  info(message: string): void;
  warn(message: string): void;
}

export interface SupervisorOptions {
  readonly dataDir: string;
  readonly onStatus: (update: StatusUpdate) => void;
  readonly logger: SupervisorLogger;
  readonly clock?: SupervisorClock;
  readonly host?: ProcessHost;
  /** Where cgroup v2 is mounted; limits are enforced only when it is usable there. */
  readonly cgroupRoot?: string;
  readonly stopGraceMs?: number;
  readonly logCapBytes?: number;
  readonly path?: string;
}

/** Delays before restart number 1, 2, 3, 4 and every later one. */
export const RESTART_BACKOFF_MS: readonly number[] = [1_000, 5_000, 30_000, 60_000];
/** A process that ran this long counts as healthy: its next restart waits the first delay again. */
export const STABLE_AFTER_MS = 60_000;
export const DEFAULT_STOP_GRACE_MS = 10_000;
export const DEFAULT_LOG_CAP_BYTES = 10 * 1024 * 1024;
/** How often adopted processes (not our children: no exit event) and log sizes are checked. */
export const POLL_MS = 1_000;
const STOP_POLL_MS = 50;
/** After SIGKILL, how long a group may linger (uninterruptible sleep) before we give up on it. */
const KILL_WAIT_MS = 5_000;
const KEPT_FINISHED_DIRS = 20;
const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const CGROUP_GROUP = "mill";

interface PidRecord {
  readonly pid: number;
  readonly startTime: string;
  readonly specHash: string;
  readonly restarts: number;
}

interface Supervised {
  readonly desired: DesiredAllocation;
  readonly dir: string;
  pid?: number;
  startTime?: string;
  restarts: number;
  /** Restarts since the process was last stable, for the back-off. */
  failures: number;
  startedAt: number;
  /** Whether a process ever ran for this allocation (here or before an agent restart). */
  started: boolean;
  /** A process we spawned (exit event) rather than adopted (polled). */
  ownChild: boolean;
  phase: "running" | "waiting" | "stopping";
  timer?: unknown;
  reported?: string;
}

export class Supervisor {
  readonly #options: SupervisorOptions;
  readonly #clock: SupervisorClock;
  readonly #host: ProcessHost;
  readonly #allocsDir: string;
  readonly #entries = new Map<number, Supervised>();
  #queue: Promise<void> = Promise.resolve();
  /** The parent cgroup; undefined where limits cannot be set; null until first needed. */
  #cgroup: string | undefined | null = null;
  #poller: unknown;
  #closed = false;

  constructor(options: SupervisorOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#host = options.host ?? nodeProcessHost;
    this.#allocsDir = join(options.dataDir, "allocs");
    fs.mkdirSync(this.#allocsDir, { recursive: true, mode: 0o700 });
    this.#schedulePoll();
  }

  /**
   * Makes this node run exactly `desired`: stops every other allocation process (waiting until
   * its group is gone), adopts live processes from an earlier agent, starts the missing ones.
   * Calls are queued: each one sees the previous one finished.
   */
  reconcile(desired: readonly DesiredAllocation[]): Promise<void> {
    return this.#enqueue(() => this.#reconcile(desired));
  }

  /** Allocation ids this supervisor currently runs or restarts, in order. */
  running(): number[] {
    return [...this.#entries.keys()].sort((a, b) => a - b);
  }

  /** Forgets timers and leaves every process running (agent shutdown: the next agent adopts). */
  close(): void {
    this.#closed = true;
    this.#clock.clearTimeout(this.#poller);
    for (const entry of this.#entries.values()) this.#clock.clearTimeout(entry.timer);
  }

  /** Runs `task` after every earlier one; a failure is logged and does not block later tasks. */
  #enqueue(task: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(task);
    this.#queue = run.catch((error: unknown) => {
      this.#options.logger.warn(`workload supervisor: ${(error as Error).message}`);
    });
    return run;
  }

  async #reconcile(desired: readonly DesiredAllocation[]): Promise<void> {
    if (this.#closed) return;
    const wanted = new Map(desired.map((allocation) => [allocation.id, allocation]));
    const stops: Promise<void>[] = [];
    for (const entry of this.#entries.values()) {
      if (!wanted.has(entry.desired.id)) stops.push(this.#stop(entry));
    }
    for (const id of this.#idsOnDisk()) {
      if (wanted.has(id) || this.#entries.has(id)) continue;
      const orphan = this.#adoptable(id);
      if (orphan) stops.push(this.#stopPid(id, orphan.pid));
      else fs.rmSync(join(this.#dir(id), "pid"), { force: true });
    }
    await Promise.all(stops);
    for (const allocation of desired) {
      if (this.#entries.has(allocation.id)) continue;
      await this.#take(allocation);
    }
    this.#pruneFinished(wanted);
  }

  /** Adopts a live process left by an earlier agent, or starts one. */
  async #take(desired: DesiredAllocation): Promise<void> {
    const dir = this.#dir(desired.id);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const record = readPidRecord(dir);
    const entry: Supervised = {
      desired,
      dir,
      restarts: Math.max(desired.restarts, record?.restarts ?? 0),
      failures: 0,
      startedAt: this.#clock.now(),
      started: record !== undefined,
      ownChild: false,
      phase: "waiting",
    };
    this.#entries.set(desired.id, entry);
    const live = this.#adoptable(desired.id);
    if (live && live.specHash === desired.specHash) {
      entry.pid = live.pid;
      entry.startTime = live.startTime;
      entry.phase = "running";
      this.#options.logger.info(
        `allocation ${desired.id} (${desired.workload}): adopted running process ${live.pid}`,
      );
      this.#report(entry, "running");
      return;
    }
    if (live) await this.#stopPid(desired.id, live.pid);
    await this.#launch(entry);
  }

  async #launch(entry: Supervised): Promise<void> {
    if (entry.phase === "stopping" || this.#closed) return;
    const { desired } = entry;
    if (entry.pid !== undefined) this.#host.killGroup(entry.pid, "SIGKILL");
    if (entry.started) entry.restarts++;
    entry.started = true;
    const logPath = join(entry.dir, "output.log");
    const logFd = fs.openSync(logPath, "a", 0o600);
    try {
      const child = await this.#host.spawn({
        argv: this.#argv(desired),
        env: this.#env(desired),
        cwd: entry.dir,
        logFd,
      });
      entry.pid = child.pid;
      entry.startTime = this.#host.startTime(child.pid) ?? "";
      entry.startedAt = this.#clock.now();
      entry.ownChild = true;
      entry.phase = "running";
      writePidRecord(entry.dir, {
        pid: child.pid,
        startTime: entry.startTime,
        specHash: desired.specHash,
        restarts: entry.restarts,
      });
      child.onExit(() => {
        if (entry.pid === child.pid) this.#exited(entry);
      });
      this.#report(entry, "running");
    } catch (error) {
      this.#options.logger.warn(
        `allocation ${desired.id} (${desired.workload}): cannot start ${JSON.stringify(desired.command[0])}: ${(error as Error).message}`,
      );
      this.#report(entry, "failed");
      entry.startedAt = this.#clock.now();
      this.#scheduleRestart(entry);
    } finally {
      fs.closeSync(logFd);
    }
  }

  #exited(entry: Supervised): void {
    if (entry.phase !== "running" || this.#closed) return;
    this.#options.logger.info(
      `allocation ${entry.desired.id} (${entry.desired.workload}): process ${entry.pid} exited`,
    );
    this.#scheduleRestart(entry);
  }

  #scheduleRestart(entry: Supervised): void {
    if (this.#clock.now() - entry.startedAt >= STABLE_AFTER_MS) entry.failures = 0;
    const delay = RESTART_BACKOFF_MS[Math.min(entry.failures, RESTART_BACKOFF_MS.length - 1)]!;
    entry.failures++;
    entry.phase = "waiting";
    entry.timer = this.#clock.setTimeout(() => {
      entry.timer = undefined;
      this.#enqueue(() => this.#launch(entry)).catch(() => {});
    }, delay);
  }

  async #stop(entry: Supervised): Promise<void> {
    entry.phase = "stopping";
    this.#clock.clearTimeout(entry.timer);
    if (entry.pid !== undefined) await this.#stopPid(entry.desired.id, entry.pid);
    else this.#releaseCgroup(entry.desired.id);
    this.#entries.delete(entry.desired.id);
  }

  /** SIGTERM to the group, SIGKILL after the grace period, then wait until the group is gone. */
  async #stopPid(id: number, pgid: number): Promise<void> {
    const grace = this.#options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
    const start = this.#clock.now();
    let killed = false;
    if (this.#host.groupAlive(pgid)) {
      this.#options.logger.info(`allocation ${id}: stopping process group ${pgid}`);
      this.#host.killGroup(pgid, "SIGTERM");
    }
    while (this.#host.groupAlive(pgid)) {
      const waited = this.#clock.now() - start;
      if (!killed && waited >= grace) {
        this.#options.logger.warn(
          `allocation ${id}: still running after ${grace} ms, sending SIGKILL`,
        );
        this.#host.killGroup(pgid, "SIGKILL");
        killed = true;
      }
      if (waited >= grace + KILL_WAIT_MS) {
        this.#options.logger.warn(`allocation ${id}: process group ${pgid} survived SIGKILL`);
        break;
      }
      await this.#sleep(STOP_POLL_MS);
    }
    fs.rmSync(join(this.#dir(id), "pid"), { force: true });
    this.#releaseCgroup(id);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.#clock.setTimeout(resolve, ms));
  }

  #report(entry: Supervised, status: ReportedStatus): void {
    const key = `${status}/${entry.restarts}`;
    if (entry.reported === key) return;
    entry.reported = key;
    this.#options.onStatus({ id: entry.desired.id, status, restarts: entry.restarts });
  }

  /** Adopted processes have no exit event: notice their end here. Also keeps logs capped. */
  #schedulePoll(): void {
    this.#poller = this.#clock.setTimeout(() => {
      if (this.#closed) return;
      for (const entry of this.#entries.values()) {
        if (entry.phase !== "running" || entry.pid === undefined) continue;
        if (!entry.ownChild && this.#host.startTime(entry.pid) !== entry.startTime) {
          this.#exited(entry);
        } else {
          this.#capLog(entry);
        }
      }
      this.#schedulePoll();
    }, POLL_MS);
  }

  #capLog(entry: Supervised): void {
    const log = join(entry.dir, "output.log");
    const cap = this.#options.logCapBytes ?? DEFAULT_LOG_CAP_BYTES;
    try {
      if (fs.statSync(log).size <= cap) return;
      fs.copyFileSync(log, `${log}.1`);
      fs.truncateSync(log, 0);
    } catch (error) {
      this.#options.logger.warn(
        `allocation ${entry.desired.id}: log rotation failed: ${(error as Error).message}`,
      );
    }
  }

  /** The pid record of a live process that really is the one recorded (not a reused pid). */
  #adoptable(id: number): PidRecord | undefined {
    const record = readPidRecord(this.#dir(id));
    if (!record) return undefined;
    return this.#host.startTime(record.pid) === record.startTime ? record : undefined;
  }

  #argv(desired: DesiredAllocation): string[] {
    const cgroup = this.#cgroupFor(desired);
    if (!cgroup) return [...desired.command];
    // The shell moves itself into the cgroup and then becomes the command: no moment outside it.
    const enter = 'echo $$ > "$1" && shift && exec "$@"';
    return [
      "/bin/sh",
      "-c",
      enter,
      "mill-enter-cgroup",
      join(cgroup, "cgroup.procs"),
      ...desired.command,
    ];
  }

  #env(desired: DesiredAllocation): Record<string, string> {
    const env: Record<string, string> = {
      PATH: this.#options.path ?? DEFAULT_PATH,
      MILL_ALLOCATION_ID: String(desired.id),
      MILL_WORKLOAD: desired.workload,
    };
    for (const entry of desired.env) {
      const split = entry.indexOf("=");
      env[entry.slice(0, split)] = entry.slice(split + 1);
    }
    return env;
  }

  /** The allocation's cgroup with its limits set, or undefined where limits cannot be set. */
  #cgroupFor(desired: DesiredAllocation): string | undefined {
    const parent = this.#cgroupParent();
    if (!parent) return undefined;
    const dir = join(parent, `alloc-${desired.id}`);
    try {
      fs.mkdirSync(dir, { recursive: true });
      const periodMicros = 100_000;
      fs.writeFileSync(
        join(dir, "cpu.max"),
        `${Math.round(desired.cpu * periodMicros)} ${periodMicros}\n`,
      );
      fs.writeFileSync(join(dir, "memory.max"), `${desired.memoryBytes}\n`);
      return dir;
    } catch (error) {
      this.#options.logger.warn(
        `allocation ${desired.id}: cannot set cgroup limits (${(error as Error).message}): its cpu and memory are reservations only`,
      );
      return undefined;
    }
  }

  /** Sets up the parent cgroup once; says once in the log when limits are not possible. */
  #cgroupParent(): string | undefined {
    if (this.#cgroup !== null) return this.#cgroup;
    const root = this.#options.cgroupRoot ?? "/sys/fs/cgroup";
    const problem = prepareCgroupParent(root);
    this.#cgroup = problem === undefined ? join(root, CGROUP_GROUP) : undefined;
    if (problem === undefined) {
      this.#options.logger.info(
        `workload limits: cgroup v2 at ${root}/${CGROUP_GROUP} enforces cpu.max and memory.max`,
      );
    } else {
      this.#options.logger.warn(
        `workload limits: ${problem}; cpu and memory are reservations only, not enforced`,
      );
    }
    return this.#cgroup;
  }

  #releaseCgroup(id: number): void {
    if (!this.#cgroup) return;
    try {
      fs.rmdirSync(join(this.#cgroup, `alloc-${id}`));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
        this.#options.logger.warn(
          `allocation ${id}: cannot remove its cgroup: ${(error as Error).message}`,
        );
      }
    }
  }

  #dir(id: number): string {
    return join(this.#allocsDir, String(id));
  }

  #idsOnDisk(): number[] {
    return fs
      .readdirSync(this.#allocsDir)
      .filter((name) => /^[1-9]\d*$/.test(name))
      .map(Number)
      .sort((a, b) => a - b);
  }

  /** Keeps the logs of the newest finished allocations; older directories go. */
  #pruneFinished(wanted: ReadonlyMap<number, DesiredAllocation>): void {
    const finished = this.#idsOnDisk().filter(
      (id) =>
        !wanted.has(id) && !this.#entries.has(id) && !fs.existsSync(join(this.#dir(id), "pid")),
    );
    for (const id of finished.slice(0, Math.max(0, finished.length - KEPT_FINISHED_DIRS))) {
      fs.rmSync(this.#dir(id), { recursive: true, force: true });
    }
  }
}

/** Returns why cgroup v2 limits cannot be used under `root`, or undefined once they can. */
export function prepareCgroupParent(root: string): string | undefined {
  let controllers: string[];
  try {
    controllers = fs.readFileSync(join(root, "cgroup.controllers"), "utf8").trim().split(/\s+/);
  } catch {
    return `${root} is not a cgroup v2 mount`;
  }
  const missing = ["cpu", "memory"].filter((name) => !controllers.includes(name));
  if (missing.length > 0)
    return `cgroup v2 at ${root} lacks the ${missing.join(" and ")} controller`;
  const parent = join(root, CGROUP_GROUP);
  try {
    enableControllers(root);
    fs.mkdirSync(parent, { recursive: true });
    enableControllers(parent);
    return undefined;
  } catch (error) {
    return `cannot delegate cpu and memory under ${root} (${(error as Error).message})`;
  }
}

function enableControllers(dir: string): void {
  const control = join(dir, "cgroup.subtree_control");
  const enabled = fs.readFileSync(control, "utf8").trim().split(/\s+/);
  if (enabled.includes("cpu") && enabled.includes("memory")) return;
  fs.writeFileSync(control, "+cpu +memory");
}

function readPidRecord(dir: string): PidRecord | undefined {
  try {
    const record = JSON.parse(fs.readFileSync(join(dir, "pid"), "utf8")) as PidRecord;
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

function writePidRecord(dir: string, record: PidRecord): void {
  const path = join(dir, "pid");
  fs.writeFileSync(`${path}.tmp`, JSON.stringify(record), { mode: 0o600 });
  fs.renameSync(`${path}.tmp`, path);
}

/** Field 22 of /proc/<pid>/stat (starttime), read after the last ")" since comm may hold any byte. */
export function parseStartTime(stat: string): string | undefined {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const state = fields[0];
  const startTime = fields[19];
  if (state === undefined || state === "Z" || state === "X" || !startTime) return undefined;
  return startTime;
}

/** Real time. Timers hold the event loop open until close(); children do not (see spawn). */
export const systemClock: SupervisorClock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export const nodeProcessHost: ProcessHost = {
  async spawn(request) {
    const [file, ...args] = request.argv;
    const child = spawn(file!, args, {
      cwd: request.cwd,
      env: request.env,
      detached: true,
      stdio: ["ignore", request.logFd, request.logFd],
    });
    await new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", reject);
    });
    // The allocation outlives the agent: an agent on its way out must not wait for it.
    child.unref();
    return {
      pid: child.pid!,
      onExit: (listener) => {
        if (child.exitCode !== null || child.signalCode !== null) listener();
        else child.once("exit", () => listener());
      },
    };
  },
  startTime(pid) {
    try {
      return parseStartTime(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
    } catch {
      return undefined;
    }
  },
  groupAlive(pgid) {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === "EPERM";
    }
  },
  killGroup(pgid, signal) {
    try {
      process.kill(-pgid, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
    }
  },
};
