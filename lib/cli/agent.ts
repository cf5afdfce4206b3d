/**
 * `mill agent`: runs a node from its data dir in the foreground (systemd, containers, after a
 * reboot), until SIGTERM or SIGINT, or until the node notices that the cluster removed it (then it
 * exits 3 with the removed message, as it does when started on a removed node's data dir, and
 * mill.service does not restart it; a unit an older mill wrote is brought up to date first). Also how `init`/`join` run a node with --foreground. The
 * signal handlers come first (stopSignals, which `init` and `join` take over first too), so a
 * signal during start-up stops what had started (wireguard-go included), releases the data dir's
 * lock and exits 0, as a signal later does.
 * Owns: the process's lifetime. Must not touch: what the node does.
 */
import { defineCommand } from "citty";
import { consola } from "consola";
import { ensureSecretDir } from "../identity/files.ts";
import { type RunningAgent, runAgent } from "../node/agent.ts";
import { AWAIT_CONFIG_VARIABLE, awaitConfig, lockDataDir, unlockDataDir } from "../node/daemon.ts";
import { NodeRemovedError } from "../node/removal.ts";
import { refreshUnit } from "../node/service.ts";
import { errorMessage } from "../shared/errors.ts";
import { dataDirArg, resolveDataDir } from "./args.ts";
import { EXIT_OK, failedExitCode, OperationError } from "./errors.ts";
import { failure } from "./failure.ts";

/** SIGTERM and SIGINT, taken over by a command that must tidy up before it exits. */
export interface StopSignals {
  /** Aborted by the first SIGTERM or SIGINT (a second one ends the process at once). */
  readonly signal: AbortSignal;
  /** Gives the signals back: from now on one ends the process at once, as by default. */
  release(): void;
}

/**
 * Takes SIGTERM and SIGINT over from now on: `mill agent`, `init` and `join` call it before they
 * start anything, so a signal during their start-up undoes what had started.
 */
export function stopSignals(): StopSignals {
  const controller = new AbortController();
  const stop = (signal: NodeJS.Signals) => {
    consola.info(`${signal}: stopping`);
    controller.abort(signal);
  };
  const onTerm = () => stop("SIGTERM");
  const onInt = () => stop("SIGINT");
  process.once("SIGTERM", onTerm);
  process.once("SIGINT", onInt);
  return {
    signal: controller.signal,
    release() {
      process.off("SIGTERM", onTerm);
      process.off("SIGINT", onInt);
    },
  };
}

/**
 * Resolves when `stopping` is aborted (at once if it already is) and the node has stopped
 * cleanly; rejects (exit 1) once the node has stopped because its Raft failed, so a supervisor
 * restarts it.
 */
export function runUntilSignal(
  agent: RunningAgent,
  stopping: AbortSignal = stopSignals().signal,
): Promise<void> {
  const failed = agent.failed.then(async (error) => {
    await agent.stop().catch(() => {});
    throw new OperationError(
      `raft stopped: ${error.message}`,
      "this node no longer takes part in the cluster: fix the cause above, then start it again (mill agent)",
    );
  });
  const signalled = new Promise<void>((resolve) => {
    const stop = () => {
      agent.stop().then(resolve, (error) => {
        consola.error(`stop: ${errorMessage(error)}`);
        resolve();
      });
    };
    if (stopping.aborted) stop();
    else stopping.addEventListener("abort", stop, { once: true });
  });
  return Promise.race([signalled, failed]);
}

export const agent = defineCommand({
  meta: {
    name: "agent",
    description: "Run this host's node from its saved state, in the foreground",
  },
  args: dataDirArg,
  async run({ args }) {
    const dataDir = resolveDataDir(args["data-dir"]);
    // Before anything starts: a signal from here on stops whatever has started.
    const stopping = stopSignals().signal;
    // Under a mill.service an older mill wrote, systemd would restart a removed node's exit 3.
    await refreshUnit(dataDir).then(
      (line) => line && consola.info(line),
      (error) => consola.warn(errorMessage(error)),
    );
    // An agent that cannot run, or is stopped while it starts, exits: the start-up undoes what it
    // began, and should anything still hold the process open, this timer (which holds nothing
    // itself) ends it.
    const exitSoon = (code: number) => setTimeout(() => process.exit(code), 3_000).unref();
    let running: RunningAgent;
    try {
      running = await startNode(dataDir, stopping);
    } catch (error) {
      if (stopping.aborted) {
        exitSoon(EXIT_OK);
        return;
      }
      exitSoon(failedExitCode(error));
      return failure(error);
    }
    const ended = await Promise.race([
      runUntilSignal(running, stopping).then(() => undefined),
      running.removed,
    ]);
    // The node stopped itself because the cluster removed it: say so, and fail as a removed node.
    if (ended !== undefined) throw new NodeRemovedError(ended);
  },
});

/** The node in `dataDir`, started; for a detached join's agent, once its config appeared. */
async function startNode(dataDir: string, stopping: AbortSignal): Promise<RunningAgent> {
  if (process.env[AWAIT_CONFIG_VARIABLE]) {
    // The lock first: a second agent on a live node's dir is refused before it waits.
    await ensureSecretDir(dataDir);
    lockDataDir(dataDir);
    try {
      await awaitConfig(dataDir, stopping);
    } catch (error) {
      unlockDataDir(dataDir);
      throw error;
    }
  }
  return runAgent(dataDir, process.env, stopping);
}
