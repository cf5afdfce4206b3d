/**
 * `mill agent`: runs a node from its data dir in the foreground (systemd, containers, after a
 * reboot), until SIGTERM or SIGINT, or until the node notices that the cluster removed it (then it
 * exits 1 with the removed message, as it does when started on a removed node's data dir). Also
 * how `init`/`join` run a node with --foreground.
 * Owns: the process's lifetime. Must not touch: what the node does.
 */
import { defineCommand } from "citty";
import { consola } from "consola";
import { ensureSecretDir } from "../identity/files.ts";
import { type RunningAgent, runAgent } from "../node/agent.ts";
import { AWAIT_CONFIG_VARIABLE, awaitConfig, lockDataDir } from "../node/daemon.ts";
import { errorMessage } from "../shared/errors.ts";
import { dataDirArg, resolveDataDir } from "./args.ts";
import { EXIT_FAILED, OperationError } from "./errors.ts";
import { failure } from "./failure.ts";

/**
 * Resolves when the process is asked to stop and the node has stopped cleanly; rejects (exit 1)
 * once the node has stopped because its Raft failed, so a supervisor restarts it.
 */
export function runUntilSignal(agent: RunningAgent): Promise<void> {
  const failed = agent.failed.then(async (error) => {
    await agent.stop().catch(() => {});
    throw new OperationError(
      `raft stopped: ${error.message}`,
      "this node no longer takes part in the cluster: fix the cause above, then start it again (mill agent)",
    );
  });
  const signalled = new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      consola.info(`${signal}: stopping`);
      agent.stop().then(resolve, (error) => {
        consola.error(`stop: ${errorMessage(error)}`);
        resolve();
      });
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
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
    // An agent that cannot run exits: the start-up undoes what it began, and should anything
    // still hold the process open, this timer (which holds nothing itself) ends it.
    const exitSoon = (error: unknown): never => {
      setTimeout(() => process.exit(EXIT_FAILED), 3_000).unref();
      return failure(error);
    };
    if (process.env[AWAIT_CONFIG_VARIABLE]) {
      // The lock first: a second agent on a live node's dir is refused before it waits.
      await ensureSecretDir(dataDir)
        .then(() => lockDataDir(dataDir))
        .catch(exitSoon);
      await awaitConfig(dataDir).catch(exitSoon);
    }
    const running = await runAgent(dataDir).catch(exitSoon);
    const ended = await Promise.race([
      runUntilSignal(running).then(() => undefined),
      running.removed,
    ]);
    // The node stopped itself because the cluster removed it: say so, and fail like a refusal.
    if (ended !== undefined) throw new OperationError(ended);
  },
});
