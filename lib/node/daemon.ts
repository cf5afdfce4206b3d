/**
 * Leaves a node running in the background: starts `mill agent` detached, its output in
 * DATA_DIR/mill.log, and waits until it is ready or has failed.
 * Owns: detaching and waiting. Must not touch: what the agent does.
 */
import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { platform } from "../platform/index.ts";

export const logPath = (dataDir: string) => join(dataDir, "mill.log");
export const pidPath = (dataDir: string) => join(dataDir, "mill.pid");

export class DaemonError extends Error {
  override name = "DaemonError";
}

function lastLines(path: string, count: number): string {
  try {
    return readFileSync(path, "utf8").trimEnd().split("\n").slice(-count).join("\n");
  } catch {
    return "";
  }
}

/**
 * Starts the agent for `dataDir` in the background and resolves once `ready()` answers true.
 * Rejects with the log's last lines when the agent exits first or `timeoutMs` passes.
 */
export async function startDetached(
  dataDir: string,
  ready: () => Promise<boolean>,
  timeoutMs: number,
): Promise<number> {
  const [command, ...prefix] = platform.selfCommand();
  const log = openSync(logPath(dataDir), "a", 0o600);
  const child = spawn(command, [...prefix, "agent", "--data-dir", dataDir], {
    detached: true,
    stdio: ["ignore", log, log],
    env: process.env,
  });
  closeSync(log);
  let exited: number | null | undefined;
  child.once("exit", (code) => {
    exited = code;
  });
  child.unref();
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited !== undefined) {
      throw new DaemonError(
        `the node exited (code ${exited}) before it was ready:\n${lastLines(logPath(dataDir), 5)}`,
      );
    }
    if (await ready()) return child.pid ?? 0;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new DaemonError(
    `the node did not become ready within ${timeoutMs / 1000}s; see ${logPath(dataDir)}:\n${lastLines(logPath(dataDir), 5)}`,
  );
}

/** The pid in DATA_DIR/mill.pid if that process is alive. */
export function runningPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(pidPath(dataDir), "utf8").trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}
