/**
 * The operating system as the workload supervisor sees it: the unprivileged user workloads run
 * as, spawning a held process, the process table, start times and signals. Tests pass a fake.
 * Owns: the real implementation over node:child_process, /proc, /etc/passwd, useradd and
 * process.kill. Must not touch: allocation files, cgroups, restart or containment decisions
 * (supervisor.ts, containment.ts, workload-user.ts decide; this file only does).
 */
import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import process from "node:process";
import type { Writable } from "node:stream";
import { errorMessage } from "../shared/errors.ts";
import {
  chooseWorkloadUser,
  USERADD_ARGS,
  WORKLOAD_USER,
  type WorkloadUser,
} from "./workload-user.ts";

export interface SpawnRequest {
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string;
  /** Descriptor of the log file, for both stdout and stderr. */
  readonly logFd: number;
  /** Who the process runs as; undefined runs it as the agent's own user. */
  readonly user?: WorkloadUser;
}

/** How a process ended: its exit code, or the signal that ended it. */
export interface ExitStatus {
  readonly code: number | null;
  readonly signal: string | null;
}

/**
 * A process that exists (its pid is known, it leads its own session and process group) but is
 * held before it runs the command, so the supervisor can record it and put it into its cgroup
 * first: nothing it starts can exist untracked.
 */
export interface HeldChild {
  readonly pid: number;
  /** Lets the process go on to run the command. */
  release(): Promise<void>;
  /** Called once, when the process exits. */
  onExit(listener: (exit: ExitStatus) => void): void;
}

/** One row of the process table. */
export interface ProcessEntry {
  readonly pid: number;
  readonly ppid: number;
  readonly pgid: number;
  readonly sid: number;
  readonly uid: number;
  readonly startTime: string;
}

/** The operating system as the supervisor sees it; tests pass a fake. */
export interface ProcessHost {
  /**
   * The user workloads run as (created when missing and possible), or undefined when the agent
   * cannot switch users (not root). Says what it did through `warn`. Looks afresh on each call;
   * a supervisor asks once and keeps the answer.
   */
  workloadUser(warn: (message: string) => void): WorkloadUser | undefined;
  /** Resolves once the held process exists; rejects when it cannot be created. */
  spawn(request: SpawnRequest): Promise<HeldChild>;
  /** The kernel's start time of a live process, undefined when it is gone or a zombie. */
  startTime(pid: number): string | undefined;
  /** Every live process (zombies left out). */
  processes(): ProcessEntry[];
  /** Signals one process; a process that is already gone is not an error. */
  kill(pid: number, signal: "SIGTERM" | "SIGKILL"): void;
}

/** Fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, session ... starttime. */
function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** Field 22 of /proc/<pid>/stat (starttime), read after the last ")" since comm may hold any byte. */
export function parseStartTime(stat: string): string | undefined {
  const fields = statFields(stat);
  const state = fields[0];
  const startTime = fields[19];
  if (state === undefined || state === "Z" || state === "X" || !startTime) return undefined;
  return startTime;
}

/** One process table row from /proc/<pid>/stat and its owner; undefined for a zombie or garbage. */
export function parseProcessEntry(
  pid: number,
  uid: number,
  stat: string,
): ProcessEntry | undefined {
  const startTime = parseStartTime(stat);
  const [, ppid, pgid, sid] = statFields(stat).map(Number);
  if (startTime === undefined || ppid === undefined || !pgid || !sid) return undefined;
  return { pid, ppid, pgid, sid, uid, startTime };
}

/**
 * The process starts as `sh`, which waits for one line on descriptor 3 before it closes that
 * descriptor and becomes the command. Closing the pipe without a line (the agent died) ends it.
 */
const HOLD_SCRIPT = 'read -r _ <&3 || exit 125; exec 3<&-; exec "$@"';

function readStat(pid: number | string): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
}

function ownerOf(path: string): number | undefined {
  try {
    return fs.statSync(path).uid;
  } catch {
    return undefined;
  }
}

function readPasswd(): string {
  try {
    return fs.readFileSync("/etc/passwd", "utf8");
  } catch {
    return "";
  }
}

export const nodeProcessHost: ProcessHost = {
  workloadUser(warn) {
    const euid = process.geteuid?.() ?? 0;
    let choice = chooseWorkloadUser(euid, readPasswd());
    if (choice.create) {
      try {
        execFileSync("useradd", USERADD_ARGS, { stdio: ["ignore", "ignore", "pipe"] });
      } catch (error) {
        // Another agent on this host may have created it meanwhile: the re-read below tells.
        warn(`cannot create the ${WORKLOAD_USER} user: ${errorMessage(error).split("\n")[0]}`);
      }
      choice = chooseWorkloadUser(euid, readPasswd(), { created: true });
    }
    if (choice.warning) warn(choice.warning);
    return choice.user;
  },
  async spawn(request) {
    const [file, ...args] = request.argv;
    const child = spawn("/bin/sh", ["-c", HOLD_SCRIPT, "mill-hold", file!, ...args], {
      cwd: request.cwd,
      env: request.env,
      detached: true,
      stdio: ["ignore", request.logFd, request.logFd, "pipe"],
      ...(request.user ? { uid: request.user.uid, gid: request.user.gid } : {}),
    });
    await new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", reject);
    });
    // The allocation outlives the agent: an agent on its way out must not wait for it.
    child.unref();
    const hold = child.stdio[3] as Writable;
    // A process that died before its release closes the pipe under us: its exit says the rest.
    hold.on("error", () => {});
    (hold as Writable & { unref?: () => void }).unref?.();
    let exit: ExitStatus | undefined;
    const listeners: ((exit: ExitStatus) => void)[] = [];
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      for (const listener of listeners) listener(exit);
    });
    return {
      pid: child.pid!,
      release: () => new Promise<void>((resolve) => hold.end("go\n", () => resolve())),
      onExit: (listener) => {
        if (exit) listener(exit);
        else listeners.push(listener);
      },
    };
  },
  startTime(pid) {
    const stat = readStat(pid);
    return stat === undefined ? undefined : parseStartTime(stat);
  },
  processes() {
    const entries: ProcessEntry[] = [];
    for (const name of fs.readdirSync("/proc")) {
      if (!/^\d+$/.test(name)) continue;
      const stat = readStat(name);
      const uid = ownerOf(`/proc/${name}`);
      if (stat === undefined || uid === undefined) continue;
      const entry = parseProcessEntry(Number(name), uid, stat);
      if (entry) entries.push(entry);
    }
    return entries;
  },
  kill(pid, signal) {
    try {
      process.kill(pid, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
    }
  },
};
