/**
 * `mill join HOST[:PORT] --token TOKEN`: makes this host a voter of an existing cluster and leaves
 * its node running. Owns: the command's flags and flow. Must not touch: the exchange itself
 * (lib/node/join.ts) or running the node (lib/node/agent.ts).
 */
import { defineCommand } from "citty";
import { consola } from "consola";
import { ensureSecretDir } from "../identity/files.ts";
import { parseToken } from "../identity/token.ts";
import { callApi, parseEndpoint, UnreachableError } from "../node/client.ts";
import { isInitialised } from "../node/config.ts";
import { runningPid, spawnDetached, waitUntilReady } from "../node/daemon.ts";
import { hostResources } from "../node/host.ts";
import { confirm, type JoinOptions, register } from "../node/join.ts";
import { pollUntil } from "../node/poll.ts";
import { checkHost, runUntilSignal, startAgent } from "./agent.ts";
import {
  nodeArgs,
  parsePort,
  resolveAdvertise,
  resolveDataDir,
  resolveMesh,
  resolveName,
} from "./args.ts";
import { OperationError, UsageError } from "./errors.ts";
import { failure } from "./failure.ts";

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
    let target: ReturnType<typeof parseEndpoint>;
    try {
      parseToken(tokenText);
      target = parseEndpoint(args.address);
    } catch (error) {
      throw new UsageError(error instanceof Error ? error.message : String(error));
    }
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
    };
    const running = runningPid(options.dataDir) !== undefined;
    if (options.mesh === "wireguard" && !running) await checkHost(options.meshInterface);
    // A fresh node's agent starts while the registration is in flight (its start-up is a good
    // part of a join's time); it waits for the config the registration writes.
    const early =
      !running && !args.foreground && !isInitialised(options.dataDir)
        ? await ensureSecretDir(options.dataDir).then(() => spawnDetached(options.dataDir, true))
        : undefined;
    const registered = await register(options).catch((error) => {
      early?.kill();
      return failure(error);
    });
    consola.info(`registered as node ${registered.config.nodeId}; starting it`);
    const local = {
      endpoint: { host: options.advertise, port: options.port },
      token: parseToken(tokenText),
      timeoutMs: 2000,
    };
    // The node's API answers (503 at first) as soon as it listens; a member answers 200.
    const listening = () =>
      callApi(local, "GET", "/v1/status").then(
        () => true,
        (error) => !(error instanceof UnreachableError),
      );
    if (args.foreground) {
      const running = await startAgent(options.dataDir);
      await confirm(options, registered).catch(failure);
      consola.success(`joined as node ${registered.config.nodeId} (voter)`);
      await runUntilSignal(running);
      return;
    }
    if (!running) {
      const agent = early ?? spawnDetached(options.dataDir);
      await waitUntilReady(options.dataDir, agent, listening, 30_000).catch(failure);
    }
    await confirm(options, registered).catch(failure);
    const member = () =>
      callApi(local, "GET", "/v1/status").then(
        () => true,
        () => false,
      );
    await pollUntil(
      member,
      30_000,
      () => new OperationError("the node joined but does not answer as a member; see its mill.log"),
    );
    consola.success(
      `joined as node ${registered.config.nodeId} (voter); node running in the background`,
    );
  },
});
