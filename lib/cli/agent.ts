/**
 * `mill agent`: runs a node from its data dir in the foreground (systemd, containers, after a
 * reboot), until SIGTERM or SIGINT. Also how `init`/`join` run a node with --foreground.
 * Owns: the process's lifetime. Must not touch: what the node does.
 */
import { defineCommand } from "citty";
import { consola } from "consola";
import { type RunningAgent, runAgent } from "../node/agent.ts";
import { AWAIT_CONFIG_VARIABLE, awaitConfig } from "../node/daemon.ts";
import { errorMessage } from "../shared/errors.ts";
import { dataDirArg, resolveDataDir } from "./args.ts";
import { failure } from "./failure.ts";

/** Resolves when the process is asked to stop and the node has stopped cleanly. */
export function runUntilSignal(agent: RunningAgent): Promise<void> {
  return new Promise((resolve) => {
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
}

export const agent = defineCommand({
  meta: {
    name: "agent",
    description: "Run this host's node from its saved state, in the foreground",
  },
  args: dataDirArg,
  async run({ args }) {
    const dataDir = resolveDataDir(args["data-dir"]);
    if (process.env[AWAIT_CONFIG_VARIABLE]) await awaitConfig(dataDir).catch(failure);
    const running = await runAgent(dataDir).catch(failure);
    await runUntilSignal(running);
  },
});
