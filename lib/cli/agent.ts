/**
 * `mill agent`: runs a node from its data dir in the foreground (systemd, containers, after a
 * reboot), until SIGTERM or SIGINT. Also how `init`/`join` run a node with --foreground.
 * Owns: the process's lifetime. Must not touch: what the node does.
 */
import { defineCommand } from "citty";
import { consola } from "consola";
import { preflight } from "../mesh/preflight.ts";
import { type RunningAgent, runAgent } from "../node/agent.ts";
import { isInitialised } from "../node/config.ts";
import { AWAIT_CONFIG_VARIABLE } from "../node/daemon.ts";
import { pollUntil } from "../node/poll.ts";
import { dataDirArg, resolveDataDir } from "./args.ts";
import { OperationError } from "./errors.ts";

/** The mesh's host requirements, checked before anything is created or started. */
export async function checkHost(iface: string): Promise<void> {
  try {
    await preflight(iface);
  } catch (error) {
    throw new OperationError(error instanceof Error ? error.message : String(error));
  }
}

/** For an agent `mill join` started early: waits for the registration to write node.json. */
async function awaitConfig(dataDir: string): Promise<void> {
  await pollUntil(
    () => isInitialised(dataDir),
    120_000,
    () => new OperationError(`no node config appeared in ${dataDir}`),
    10,
  );
}

export async function startAgent(dataDir: string): Promise<RunningAgent> {
  try {
    return await runAgent(dataDir);
  } catch (error) {
    throw new OperationError(error instanceof Error ? error.message : String(error));
  }
}

/** Resolves when the process is asked to stop and the node has stopped cleanly. */
export function runUntilSignal(agent: RunningAgent): Promise<void> {
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      consola.info(`${signal}: stopping`);
      agent.stop().then(resolve, (error) => {
        consola.error(`stop: ${error instanceof Error ? error.message : error}`);
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
    if (process.env[AWAIT_CONFIG_VARIABLE]) await awaitConfig(dataDir);
    const running = await startAgent(dataDir);
    await runUntilSignal(running);
  },
});
