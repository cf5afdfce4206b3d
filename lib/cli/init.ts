/**
 * `mill init`: creates a cluster on this host, starts its first node and prints the join token.
 * Owns: the command's flags and flow. Must not touch: what a cluster is made of (lib/node/init.ts).
 */
import { defineCommand } from "citty";
import { consola } from "consola";
import { parseToken } from "../identity/token.ts";
import { callApi } from "../node/client.ts";
import { startDetached } from "../node/daemon.ts";
import { hostResources } from "../node/host.ts";
import { initCluster } from "../node/init.ts";
import { pollUntil } from "../node/poll.ts";
import { checkHost, runUntilSignal, startAgent } from "./agent.ts";
import {
  meshCidrArg,
  nodeArgs,
  parsePort,
  resolveAdvertise,
  resolveDataDir,
  resolveMesh,
  resolveName,
} from "./args.ts";
import { OperationError, UsageError } from "./errors.ts";

export const init = defineCommand({
  meta: { name: "init", description: "Create a cluster with this host as its first node" },
  args: {
    ...nodeArgs,
    ...meshCidrArg,
    token: {
      type: "string",
      description: "Use this token's secret instead of a random one",
      valueHint: "TOKEN",
    },
    provider: {
      type: "string",
      description: "Cloud provider name, e.g. digitalocean",
      valueHint: "NAME",
    },
    "provider-token": {
      type: "string",
      description: "The provider's API token (kept as a cluster secret)",
      valueHint: "TOKEN",
    },
  },
  async run({ args }) {
    if (Boolean(args.provider) !== Boolean(args["provider-token"])) {
      throw new UsageError("--provider and --provider-token go together: pass both or neither");
    }
    const dataDir = resolveDataDir(args["data-dir"]);
    const port = parsePort(args.port);
    const advertise = resolveAdvertise(args.advertise);
    const mesh = resolveMesh(args.mesh);
    if (mesh === "wireguard") await checkHost(args["mesh-interface"]);
    let token: string;
    try {
      token = await initCluster({
        dataDir,
        name: resolveName(args.name),
        advertise,
        port,
        mesh,
        meshCidr: args["mesh-cidr"],
        meshInterface: args["mesh-interface"],
        resources: hostResources(),
        ...(args.token ? { token: args.token } : {}),
        ...(args.provider
          ? { provider: { name: args.provider, token: args["provider-token"]! } }
          : {}),
      });
    } catch (error) {
      throw new OperationError(error instanceof Error ? error.message : String(error));
    }
    const client = {
      endpoint: { host: advertise, port },
      token: parseToken(token),
      timeoutMs: 2000,
    };
    const serving = () =>
      callApi(client, "GET", "/v1/status").then(
        () => true,
        () => false,
      );
    if (args.foreground) {
      const running = await startAgent(dataDir);
      await pollUntil(
        serving,
        30_000,
        () => new OperationError("the node did not serve within 30 s"),
      );
      process.stdout.write(`Token: ${token}\n`);
      await runUntilSignal(running);
      return;
    }
    const pid = await startDetached(dataDir, serving, 30_000).catch((error: Error) => {
      throw new OperationError(error.message);
    });
    consola.success(
      `cluster created; node running in the background (pid ${pid}, logs in ${dataDir}/mill.log)`,
    );
    process.stdout.write(`Token: ${token}\n`);
  },
});
