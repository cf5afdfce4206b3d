/**
 * `mill init`: flags in, one call to lib/node/init.ts (which creates the cluster and starts its
 * first node), the join token printed. Then it keeps the node in the foreground until a signal
 * (--foreground) or hands the detached node to systemd (lib/node/service.ts).
 * Owns: the command's flags and output. Must not touch: init's steps (lib/node/init.ts).
 */
import { defineCommand } from "citty";
import { consola } from "consola";
import { hostResources } from "../node/host.ts";
import { initCluster } from "../node/init.ts";
import { keepAcrossReboots } from "../node/service.ts";
import { runUntilSignal } from "./agent.ts";
import {
  meshCidrArg,
  nodeArgs,
  parsePort,
  resolveAdvertise,
  resolveDataDir,
  resolveMesh,
  resolveName,
} from "./args.ts";
import { UsageError } from "./errors.ts";
import { failure } from "./failure.ts";

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
    const started = await initCluster({
      dataDir,
      name: resolveName(args.name),
      advertise,
      port,
      mesh: resolveMesh(args.mesh),
      meshCidr: args["mesh-cidr"],
      meshInterface: args["mesh-interface"],
      resources: hostResources(),
      ...(args.token ? { token: args.token } : {}),
      ...(args.provider
        ? { provider: { name: args.provider, token: args["provider-token"]! } }
        : {}),
      foreground: Boolean(args.foreground),
    }).catch(failure);
    if (started.agent) {
      process.stdout.write(`Token: ${started.token}\n`);
      await runUntilSignal(started.agent);
      return;
    }
    consola.success(
      `cluster created; node running in the background (pid ${started.pid}, logs in ${dataDir}/mill.log)`,
    );
    process.stdout.write(`Token: ${started.token}\n`);
    consola.info(await keepAcrossReboots(dataDir, args.service).catch(failure));
  },
});
