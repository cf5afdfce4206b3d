/**
 * Leaves a node running in the background: starts `mill agent` detached, its output in
 * DATA_DIR/mill.log, and waits until it is ready or has failed.
 * Owns: detaching and waiting. Must not touch: what the agent does.
 */
import { spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  fstatSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { platform } from "../platform/index.ts";
import { pollUntil } from "../shared/poll.ts";
import { processExists } from "../shared/process.ts";
import { throwIfStopped } from "../shared/stopping.ts";
import { isInitialised } from "./config.ts";

export const logPath = (dataDir: string) => join(dataDir, "mill.log");
export const pidPath = (dataDir: string) => join(dataDir, "mill.pid");

/**
 * The agent's last word in its log since byte `from` (where this run began), for a one-line
 * failure: the error it exited with (the command line prints it as `error: …`), else its last
 * line.
 */
function lastWord(path: string, from: number): string {
  let lines: string[];
  try {
    lines = readFileSync(path).subarray(from).toString("utf8").trimEnd().split("\n");
  } catch {
    lines = [];
  }
  const error = [...lines].reverse().find((line) => line.startsWith("error: "));
  return (error ?? lines.at(-1) ?? "").replace(/^error: /, "") || "it logged nothing";
}

/** Set in a detached agent's environment: wait for node.json instead of failing without it. */
export const AWAIT_CONFIG_VARIABLE = "MILL_AGENT_AWAIT_CONFIG";

/**
 * In an agent `mill join` started early: waits for the registration to write node.json, or until
 * `stopping` is aborted (the agent was asked to stop).
 */
export async function awaitConfig(dataDir: string, stopping?: AbortSignal): Promise<void> {
  await pollUntil(
    () => {
      throwIfStopped(stopping, `while waiting for ${dataDir}'s config`);
      return isInitialised(dataDir);
    },
    120_000,
    () => new Error(`no node config appeared in ${dataDir}`),
    10,
  );
}

export interface DetachedAgent {
  readonly pid: number;
  /** The size of mill.log when it started: its own lines come after. */
  readonly logFrom: number;
  /** undefined while it runs. */
  readonly exitCode: number | null | undefined;
  kill(): void;
  /** Stops it (SIGTERM, then SIGKILL if it lingers) and resolves once it has exited. */
  stop(): Promise<void>;
}

/**
 * Starts `mill agent` for `dataDir` in the background. With `awaitConfig` it may start before the
 * node's config is written (a join overlaps the agent's start-up with its registration).
 */
export function spawnDetached(dataDir: string, awaitConfig = false): DetachedAgent {
  const [command, ...prefix] = platform.selfCommand();
  const log = openSync(logPath(dataDir), "a", 0o600);
  const logFrom = fstatSync(log).size;
  const child = spawn(command, [...prefix, "agent", "--data-dir", dataDir], {
    detached: true,
    stdio: ["ignore", log, log],
    env: awaitConfig ? { ...process.env, [AWAIT_CONFIG_VARIABLE]: "1" } : process.env,
  });
  closeSync(log);
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once("exit", (code) => {
      exitCode = code;
      resolve();
    });
  });
  child.unref();
  return {
    pid: child.pid ?? 0,
    logFrom,
    get exitCode() {
      return exitCode;
    },
    kill: () => child.kill("SIGKILL"),
    async stop() {
      if (exitCode !== undefined) return;
      // SIGTERM lets the node stop what it started (wireguard-go); SIGKILL if it does not.
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** How long a node gets to stop after SIGTERM before it is killed. */
const STOP_TIMEOUT_MS = 10_000;

/** Resolves once `ready()` answers true; rejects with the log's last lines if the agent exits first. */
export async function waitUntilReady(
  dataDir: string,
  agent: DetachedAgent,
  ready: () => Promise<boolean>,
  timeoutMs: number,
): Promise<number> {
  await pollUntil(
    () => {
      if (agent.exitCode !== undefined) {
        throw new Error(
          `the node exited (code ${agent.exitCode}) before it was ready: ${lastWord(logPath(dataDir), agent.logFrom)}`,
        );
      }
      return ready();
    },
    timeoutMs,
    () =>
      new Error(
        `the node did not become ready within ${timeoutMs / 1000}s; its log last said: ${lastWord(logPath(dataDir), agent.logFrom)}`,
      ),
  );
  return agent.pid;
}

/**
 * Starts the agent for `dataDir` in the background and resolves once `ready()` answers true; if
 * it is not ready in time, it is stopped before the error is thrown.
 */
export async function startDetached(
  dataDir: string,
  ready: () => Promise<boolean>,
  timeoutMs: number,
): Promise<number> {
  const agent = spawnDetached(dataDir);
  try {
    return await waitUntilReady(dataDir, agent, ready, timeoutMs);
  } catch (error) {
    await agent.stop();
    throw error;
  }
}

/** The pid DATA_DIR/mill.pid holds, whether or not that process runs. */
function recordedPid(dataDir: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(pidPath(dataDir), "utf8").trim());
  } catch {
    return undefined;
  }
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** The pid in DATA_DIR/mill.pid if that process is alive and runs Mill. */
export function runningPid(dataDir: string): number | undefined {
  const pid = recordedPid(dataDir);
  if (pid === undefined) return undefined;
  return processExists(pid) && runsMill(pid) ? pid : undefined;
}

/**
 * Whether `pid` is a Mill node's process (`mill agent`, or `init`/`join` in the foreground), so
 * that a pid file left over from before a reboot, whose number another process now has, does not
 * keep a node from starting. Without /proc it cannot tell, and trusts the pid.
 */
function runsMill(pid: number): boolean {
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ENOENT" || !existsSync("/proc/self");
  }
  return argv.some((arg) => arg === "agent" || arg === "init" || arg === "join");
}

/** Another live process holds the data dir's lock. */
export class NodeRunningError extends Error {
  override name = "NodeRunningError";
  constructor(
    readonly dataDir: string,
    readonly pid: number,
  ) {
    super(`a Mill node already runs in ${dataDir} (pid ${pid})`);
  }
}

/**
 * Takes the data dir for this process: DATA_DIR/mill.pid, created exclusively with this pid in
 * it. A pid file whose process is gone is replaced; one of a live node is a NodeRunningError, and
 * nothing in the data dir is touched. The node's stop() removes the file.
 */
export function lockDataDir(dataDir: string): void {
  const path = pidPath(dataDir);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: "wx", mode: 0o600 });
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const holder = runningPid(dataDir);
    if (holder === process.pid) return;
    if (holder !== undefined) throw new NodeRunningError(dataDir, holder);
    rmSync(path, { force: true });
  }
  throw new NodeRunningError(dataDir, runningPid(dataDir) ?? 0);
}

/** Gives the data dir's lock up if this process holds it (never another node's). */
export function unlockDataDir(dataDir: string): void {
  if (recordedPid(dataDir) === process.pid) rmSync(pidPath(dataDir), { force: true });
}
