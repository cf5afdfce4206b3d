/**
 * The node's supervisor: runs the allocations the cluster assigned to this node as child
 * processes, restarts them with back-off, adopts them across agent restarts, stops the rest.
 * This file is the restart state machine; the operating system (process-host.ts), the allocation
 * directories (allocation-dirs.ts), cgroups (cgroups.ts) and the session fallback
 * (containment.ts) sit behind it.
 * Owns: when each allocation's process starts, restarts, is adopted or stopped. Must not touch:
 * the replicated state (it is told what to run through reconcile() and reports through onStatus),
 * the network.
 *
 * Decisions recorded here:
 * - Each allocation runs detached in its own session and process group (pid = pgid = sid), so
 *   the agent can exit or crash without taking its workloads along.
 * - Workloads never run as root: as the `mill-workload` user (else `nobody`; see
 *   workload-user.ts), in a working directory outside the data dir.
 * - An allocation is every process it ever started: its cgroup where cgroup v2 is writable,
 *   else its session, process group and descendants (containment.ts). A stop signals all of
 *   them and waits until none is left, so `setsid` does not escape it.
 * - A process is spawned held (process-host.ts): it enters its cgroup and its pid record is
 *   written before it runs the command. When either fails (a full disk), it is killed before it
 *   ever ran, so no process is left untracked.
 * - stdout and stderr go straight to the allocation's output.log (opened for append), not
 *   through a pipe: an adopted process keeps logging after the agent that started it is gone.
 * - A live process is adopted only when its pid record's start time matches the kernel's, so a
 *   pid reused by another process is never adopted or signalled as ours.
 * - The process gets PATH, MILL_ALLOCATION_ID, MILL_WORKLOAD and the spec's env, never the
 *   agent's own environment, which may hold the cluster token.
 * - reconcile() stops what is not desired before it starts anything, so a node that comes back
 *   from NodeDown stops its stale processes before it takes new work.
 */

import { closeSync } from "node:fs";
import { RestartBackoff, type RestartPolicy } from "../shared/backoff.ts";
import { type Cancel, type Clock, systemClock } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Log } from "../shared/log.ts";
import { SerialQueue } from "../shared/serial.ts";
import { AllocationDirs, type PidRecord } from "./allocation-dirs.ts";
import { AllocationCgroups, defaultCgroupRoot, nodeKey } from "./cgroups.ts";
import { isControl, MAX_REASON, type ReportedStatus } from "./commands.ts";
import { processKey, sessionMembers } from "./containment.ts";
import { type ExitStatus, nodeProcessHost, type ProcessHost } from "./process-host.ts";
import type { AllocationDetail, DesiredAllocation } from "./state.ts";
import type { WorkloadUser } from "./workload-user.ts";

/** The supervisor needs of a clock only the time and one-shot timers. */
export type SupervisorClock = Pick<Clock, "now" | "after">;

export interface StatusUpdate extends AllocationDetail {
  readonly id: number;
  readonly status: ReportedStatus;
  readonly restarts: number;
}

export interface SupervisorOptions {
  readonly dataDir: string;
  readonly onStatus: (update: StatusUpdate) => void;
  readonly logger: Log;
  readonly clock?: SupervisorClock;
  readonly host?: ProcessHost;
  /** Where cgroup v2 is mounted (default: found in /proc/self/mounts); a path that is not one
   * leaves containment to the session fallback. */
  readonly cgroupRoot?: string;
  readonly stopGraceMs?: number;
  readonly logCapBytes?: number;
  readonly path?: string;
}

/** Restarts wait 1 s, 5 s, 30 s, then 60 s; a process that ran 60 s starts over at 1 s. */
export const RESTART_POLICY: RestartPolicy = {
  delaysMs: [1_000, 5_000, 30_000, 60_000],
  stableMs: 60_000,
};
export const DEFAULT_STOP_GRACE_MS = 10_000;
/** After an exit or a failed start, how long a restarted process must stay up to be "running". */
export const STABLE_REPORT_MS = 10_000;
export const DEFAULT_LOG_CAP_BYTES = 10 * 1024 * 1024;
/** How often adopted processes (not our children: no exit event) and log sizes are checked. */
export const POLL_MS = 1_000;
const STOP_POLL_MS = 50;
/** After SIGKILL, how long a group may linger (uninterruptible sleep) before we give up on it. */
const KILL_WAIT_MS = 5_000;
const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

interface Supervised {
  readonly desired: DesiredAllocation;
  pid?: number;
  startTime?: string;
  restarts: number;
  readonly backoff: RestartBackoff;
  startedAt: number;
  /** Whether a process ever ran for this allocation (here or before an agent restart). */
  started: boolean;
  /** A process we spawned (exit event) rather than adopted (polled). */
  ownChild: boolean;
  /** Without a cgroup: every process seen as part of the allocation (see containment.ts). */
  tracked: Set<string>;
  /** What is wrong since the last exit or failed start, until a run stays up STABLE_REPORT_MS. */
  trouble?: AllocationDetail;
  stableTimer?: Cancel;
  phase: "running" | "waiting" | "stopping";
  timer?: Cancel;
  reported?: string;
}

export class Supervisor {
  readonly #options: SupervisorOptions;
  readonly #clock: SupervisorClock;
  readonly #host: ProcessHost;
  readonly #dirs: AllocationDirs;
  readonly #cgroups: AllocationCgroups;
  readonly #entries = new Map<number, Supervised>();
  readonly #queue = new SerialQueue();
  /** The user workloads run as, once asked (undefined: the agent's own, it is not root). */
  #user: { value: WorkloadUser | undefined } | undefined;
  #poller: Cancel | undefined;
  #closed = false;

  constructor(options: SupervisorOptions) {
    this.#options = options;
    // Real timers hold the event loop open until close(); children do not (see spawn).
    this.#clock = options.clock ?? systemClock;
    this.#host = options.host ?? nodeProcessHost;
    this.#dirs = new AllocationDirs(options.dataDir);
    this.#cgroups = new AllocationCgroups(
      options.cgroupRoot ?? defaultCgroupRoot(),
      nodeKey(options.dataDir),
      options.logger,
    );
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
    this.#poller?.();
    for (const entry of this.#entries.values()) entry.timer?.();
  }

  /** Runs `task` after every earlier one; a failure is logged and does not block later tasks. */
  #enqueue(task: () => Promise<void>): Promise<void> {
    const run = this.#queue.run(task);
    run.catch((error: unknown) => {
      this.#options.logger.warn(`workload supervisor: ${errorMessage(error)}`);
    });
    return run;
  }

  async #reconcile(desired: readonly DesiredAllocation[]): Promise<void> {
    if (this.#closed) return;
    this.#workloadUser();
    const wanted = new Map(desired.map((allocation) => [allocation.id, allocation]));
    const stops: Promise<void>[] = [];
    for (const entry of this.#entries.values()) {
      if (!wanted.has(entry.desired.id)) stops.push(this.#stop(entry));
    }
    for (const id of this.#dirs.ids()) {
      if (wanted.has(id) || this.#entries.has(id)) continue;
      const orphan = this.#adoptable(id);
      if (orphan) stops.push(this.#stopPid(id, orphan.pid));
      else this.#dirs.removePid(id);
    }
    await Promise.all(stops);
    for (const allocation of desired) {
      if (this.#entries.has(allocation.id)) continue;
      await this.#take(allocation);
    }
    const runs = (id: number) => wanted.has(id) || this.#entries.has(id);
    this.#dirs.pruneFinished(runs);
    this.#cgroups.releaseStale(runs);
  }

  /** Adopts a live process left by an earlier agent, or starts one. */
  async #take(desired: DesiredAllocation): Promise<void> {
    this.#dirs.create(desired.id);
    const record = this.#dirs.readPid(desired.id);
    const entry: Supervised = {
      desired,
      restarts: Math.max(desired.restarts, record?.restarts ?? 0),
      backoff: new RestartBackoff(RESTART_POLICY),
      startedAt: this.#clock.now(),
      started: record !== undefined,
      ownChild: false,
      tracked: new Set(),
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
    // What the last run left behind (children of an exited first process) goes first.
    if (entry.pid !== undefined) this.#signalAll(desired.id, entry.pid, "SIGKILL", entry.tracked);
    if (entry.started) entry.restarts++;
    entry.started = true;
    let logFd: number | undefined;
    try {
      logFd = this.#dirs.openLog(desired.id);
      const user = this.#workloadUser();
      const cwd = this.#dirs.createWorkDir(desired.id, user);
      const group = this.#cgroups.create(desired);
      const child = await this.#host.spawn({
        argv: desired.command,
        env: this.#env(desired),
        cwd,
        logFd,
        ...(user ? { user } : {}),
      });
      try {
        if (group) this.#cgroups.enter(group, child.pid);
        entry.startTime = this.#host.startTime(child.pid) ?? "";
        this.#dirs.writePid(desired.id, {
          pid: child.pid,
          startTime: entry.startTime,
          specHash: desired.specHash,
          restarts: entry.restarts,
        });
      } catch (error) {
        // Still held: it never ran the command, and nothing of it is left to track.
        this.#host.kill(child.pid, "SIGKILL");
        throw error;
      }
      entry.pid = child.pid;
      entry.tracked = new Set();
      entry.startedAt = this.#clock.now();
      entry.ownChild = true;
      entry.phase = "running";
      child.onExit((exit) => {
        if (entry.pid === child.pid) this.#exited(entry, exit);
      });
      await child.release();
      if (entry.trouble) this.#reportWhenStable(entry, child.pid);
      else this.#report(entry, "running");
    } catch (error) {
      this.#options.logger.warn(
        `allocation ${desired.id} (${desired.workload}): cannot start ${JSON.stringify(desired.command[0])}: ${errorMessage(error)}`,
      );
      entry.startedAt = this.#clock.now();
      const restartAt = this.#scheduleRestart(entry);
      entry.trouble = { reason: reasonText(errorMessage(error)) };
      this.#report(entry, "failed", { ...entry.trouble, restartAt });
    } finally {
      if (logFd !== undefined) closeSync(logFd);
    }
  }

  /** The process ended (`exit` unknown for an adopted one): failing until its restart holds. */
  #exited(entry: Supervised, exit?: ExitStatus): void {
    if (entry.phase !== "running" || this.#closed) return;
    const how =
      exit === undefined ? "" : exit.signal ? ` (${exit.signal})` : ` (code ${exit.code})`;
    this.#options.logger.info(
      `allocation ${entry.desired.id} (${entry.desired.workload}): process ${entry.pid} exited${how}`,
    );
    entry.stableTimer?.();
    const restartAt = this.#scheduleRestart(entry);
    entry.trouble = exitDetail(exit);
    this.#report(entry, "failing", { ...entry.trouble, restartAt });
  }

  /** Reports "running" once the process `pid` has stayed up STABLE_REPORT_MS. */
  #reportWhenStable(entry: Supervised, pid: number): void {
    entry.stableTimer = this.#clock.after(STABLE_REPORT_MS, () => {
      if (entry.pid !== pid || entry.phase !== "running" || this.#closed) return;
      entry.trouble = undefined;
      this.#report(entry, "running");
    });
  }

  /** Arms the restart after the back-off; returns when it is due. */
  #scheduleRestart(entry: Supervised): number {
    const delay = entry.backoff.next(this.#clock.now() - entry.startedAt);
    entry.phase = "waiting";
    entry.timer = this.#clock.after(delay, () => {
      entry.timer = undefined;
      this.#enqueue(() => this.#launch(entry)).catch(() => {});
    });
    return this.#clock.now() + delay;
  }

  async #stop(entry: Supervised): Promise<void> {
    entry.phase = "stopping";
    entry.timer?.();
    entry.stableTimer?.();
    if (entry.pid !== undefined) await this.#stopPid(entry.desired.id, entry.pid);
    else this.#cgroups.release(entry.desired.id);
    this.#entries.delete(entry.desired.id);
  }

  /**
   * SIGTERM to every process of the allocation, SIGKILL after the grace period, then wait until
   * none is left. `leader` is its first process (pid = pgid = sid).
   */
  async #stopPid(id: number, leader: number): Promise<void> {
    const grace = this.#options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
    const start = this.#clock.now();
    // A process seen once stays a member until it is gone: the SIGTERM that ends the leader
    // reparents its `setsid` children to init, out of its session and tree, and one that
    // ignores SIGTERM would escape if no poll had tracked it yet.
    const seen = new Set(this.#entries.get(id)?.tracked);
    let killed = false;
    if (this.#signalAll(id, leader, "SIGTERM", seen) > 0) {
      this.#options.logger.info(`allocation ${id}: stopping the processes of ${leader}`);
    }
    while (this.#members(id, leader, seen).length > 0) {
      const waited = this.#clock.now() - start;
      if (!killed && waited >= grace) {
        this.#options.logger.warn(
          `allocation ${id}: still running after ${grace} ms, sending SIGKILL`,
        );
        killed = true;
      }
      // Every round after the grace period: a process forked since the last round gets one too.
      if (killed) this.#signalAll(id, leader, "SIGKILL", seen);
      if (waited >= grace + KILL_WAIT_MS) {
        this.#options.logger.warn(`allocation ${id}: processes of ${leader} survived SIGKILL`);
        break;
      }
      await this.#sleep(STOP_POLL_MS);
    }
    this.#dirs.removePid(id);
    this.#cgroups.release(id);
  }

  /**
   * The live pids of an allocation: its cgroup's, or (without one) its session's, their
   * descendants' and those in `seen`, restricted to the workload user; adds them to `seen`.
   */
  #members(id: number, leader: number, seen: Set<string>): number[] {
    const procs = this.#cgroups.procs(id);
    if (procs) return procs.filter((pid) => this.#host.startTime(pid) !== undefined);
    const members = sessionMembers(this.#host.processes(), leader, seen, this.#user?.value?.uid);
    for (const member of members) seen.add(processKey(member));
    return members.map((entry) => entry.pid);
  }

  /** Signals every process of the allocation; returns how many there were. */
  #signalAll(id: number, leader: number, signal: "SIGTERM" | "SIGKILL", seen: Set<string>): number {
    const members = this.#members(id, leader, seen);
    for (const pid of members) this.#host.kill(pid, signal);
    if (signal === "SIGKILL") this.#cgroups.killAll(id);
    return members.length;
  }

  /** The user workloads run as, asked of the host once. */
  #workloadUser(): WorkloadUser | undefined {
    this.#user ??= {
      value: this.#host.workloadUser((message) => this.#options.logger.warn(message)),
    };
    return this.#user.value;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.#clock.after(ms, resolve));
  }

  #report(entry: Supervised, status: ReportedStatus, detail: AllocationDetail = {}): void {
    const update: StatusUpdate = {
      id: entry.desired.id,
      status,
      restarts: entry.restarts,
      ...detail,
    };
    const key = JSON.stringify(update);
    if (entry.reported === key) return;
    entry.reported = key;
    this.#options.onStatus(update);
  }

  /** Adopted processes have no exit event: notice their end here. Also keeps logs capped. */
  #schedulePoll(): void {
    this.#poller = this.#clock.after(POLL_MS, () => {
      if (this.#closed) return;
      for (const entry of this.#entries.values()) {
        if (entry.phase !== "running" || entry.pid === undefined) continue;
        if (!entry.ownChild && this.#host.startTime(entry.pid) !== entry.startTime) {
          this.#exited(entry);
        } else {
          this.#capLog(entry);
          this.#track(entry);
        }
      }
      this.#schedulePoll();
    });
  }

  /** Without a cgroup, remembers who belongs to the allocation while their parents live. */
  #track(entry: Supervised): void {
    if (entry.pid === undefined || this.#cgroups.procs(entry.desired.id)) return;
    const members = sessionMembers(
      this.#host.processes(),
      entry.pid,
      entry.tracked,
      this.#user?.value?.uid,
    );
    entry.tracked = new Set(members.map(processKey));
  }

  #capLog(entry: Supervised): void {
    try {
      this.#dirs.capLog(entry.desired.id, this.#options.logCapBytes ?? DEFAULT_LOG_CAP_BYTES);
    } catch (error) {
      this.#options.logger.warn(
        `allocation ${entry.desired.id}: log rotation failed: ${errorMessage(error)}`,
      );
    }
  }

  /** The pid record of a live process that really is the one recorded (not a reused pid). */
  #adoptable(id: number): PidRecord | undefined {
    const record = this.#dirs.readPid(id);
    if (!record) return undefined;
    return this.#host.startTime(record.pid) === record.startTime ? record : undefined;
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
}

/** How an exit reads in a report: its code or its signal. */
function exitDetail(exit: ExitStatus | undefined): AllocationDetail {
  if (exit?.signal) return { signal: exit.signal };
  if (exit?.code !== null && exit?.code !== undefined) return { exitCode: exit.code };
  return {};
}

/** A start-up error as a report carries it: one printable line, at most MAX_REASON long. */
function reasonText(message: string): string {
  const printable = [...message].map((character) => (isControl(character) ? " " : character));
  const line = printable.join("").trim() || "unknown error";
  return line.length <= MAX_REASON ? line : `${line.slice(0, MAX_REASON - 1)}…`;
}
