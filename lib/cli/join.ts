/**
 * `mill join HOST[:PORT] --token TOKEN`: flags in, one call to lib/node/join.ts (which registers,
 * starts the node and confirms it as a voter), the outcome printed. Then, as `mill init` does,
 * it keeps the node in the foreground until a signal (--foreground) or hands the detached node
 * to systemd (lib/node/service.ts). It takes the signals over first, so one that comes before the
 * node asks to become a voter undoes the join (its registration withdrawn).
 * Owns: the command's flags and output. Must not touch: the join's steps (lib/node/join.ts).
 */
import { defineCommand } from "citty";
import { consola } from "consola";
import { parseEndpoint } from "../node/client.ts";
import { hostResources } from "../node/host.ts";
import { type JoinOptions, joinCluster } from "../node/join.ts";
import { keepAcrossReboots } from "../node/service.ts";
import { errorMessage } from "../shared/errors.ts";
import { runUntilSignal, stopSignals } from "./agent.ts";
import {
  nodeArgs,
  parsePort,
  resolveAdvertise,
  resolveDataDir,
  resolveMesh,
  resolveName,
} from "./args.ts";
import { UsageError } from "./errors.ts";
import { failure } from "./failure.ts";
import { parseTokenFlag } from "./target.ts";

export const join = defineCommand({
  meta: { name: "join", description: "Join this host to a cluster through any of its nodes" },
  args: {
    address: {
      type: "positional",
      description: "Any node of the cluster, HOST[:PORT]",
      valueHint: "HOST[:PORT]",
      required: true,
    },
    token: {
      type: "string",
      description: "The token mill init printed (default: MILL_TOKEN)",
      valueHint: "TOKEN",
    },
    ...nodeArgs,
  },
  async run({ args }) {
    const tokenText = args.token || process.env.MILL_TOKEN;
    if (!tokenText) throw new UsageError("--token is required: pass the token mill init printed");
    parseTokenFlag(tokenText);
    let target: ReturnType<typeof parseEndpoint>;
    try {
      target = parseEndpoint(args.address);
    } catch (error) {
      throw new UsageError(errorMessage(error));
    }
    // Before anything starts: a signal until the node asks to be a voter undoes the join.
    const signals = stopSignals();
    const options: JoinOptions = {
      dataDir: resolveDataDir(args["data-dir"]),
      target,
      token: tokenText,
      name: resolveName(args.name),
      advertise: resolveAdvertise(args.advertise, target.host),
      port: parsePort(args.port),
      mesh: resolveMesh(args.mesh),
      meshInterface: args["mesh-interface"],
      resources: hostResources(),
      foreground: Boolean(args.foreground),
      stopping: signals.signal,
    };
    const joined = await joinCluster(options, {
      registered: (nodeId) => consola.info(`registered as node ${nodeId}; starting it`),
      withdrawal: (line) => consola.warn(line),
      retrying: (line) => consola.warn(line),
    }).catch(failure);
    if (joined.agent) {
      consola.success(`joined as node ${joined.nodeId} (voter)`);
      await runUntilSignal(joined.agent, signals.signal);
      return;
    }
    // The detached node is a voter: the join is done, whatever comes now.
    signals.release();
    if (signals.signal.aborted) consola.info("the node had joined before the signal came");
    consola.success(`joined as node ${joined.nodeId} (voter); node running in the background`);
    consola.info(await keepAcrossReboots(options.dataDir, args.service).catch(failure));
  },
});
