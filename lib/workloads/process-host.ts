/**
 * The operating system as the workload supervisor sees it: spawn a detached process, read a
 * process's kernel start time, check and signal a process group. Tests pass a fake ProcessHost.
 * Owns: the real implementation over node:child_process, /proc and process.kill. Must not touch:
 * allocation files, cgroups, restart decisions (supervisor.ts).
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import process from "node:process";

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

/** Field 22 of /proc/<pid>/stat (starttime), read after the last ")" since comm may hold any byte. */
export function parseStartTime(stat: string): string | undefined {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const state = fields[0];
  const startTime = fields[19];
  if (state === undefined || state === "Z" || state === "X" || !startTime) return undefined;
  return startTime;
}

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
