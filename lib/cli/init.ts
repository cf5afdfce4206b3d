/**
 * `mill init`: flags in, one call to lib/node/init.ts (which creates the cluster and starts its
 * first node), the join token printed. Then it keeps the node in the foreground until a signal
 * (--foreground) or hands the detached node to systemd (lib/node/service.ts). It takes the
 * signals over first, so one that comes before the node serves undoes the init.
 * Owns: the command's flags and output. Must not touch: init's steps (lib/node/init.ts).
 */
import { readFile } from "node:fs/promises";
import { defineCommand } from "citty";
import { consola } from "consola";
import { hostResources } from "../node/host.ts";
import { initCluster } from "../node/init.ts";
import { keepAcrossReboots } from "../node/service.ts";
import { errorMessage } from "../shared/errors.ts";
import { runUntilSignal, stopSignals } from "./agent.ts";
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
      description:
        "The provider's API token; other local users can read a command line, so prefer MILL_PROVIDER_TOKEN or --provider-token-file",
      valueHint: "TOKEN",
    },
    "provider-token-file": {
      type: "string",
      description: "A file holding the provider's API token (kept in the data dir, 0600)",
      valueHint: "PATH",
    },
  },
  async run({ args }) {
    const providerToken = await resolveProviderToken(args);
    if (Boolean(args.provider) !== (providerToken !== undefined)) {
      throw new UsageError(
        "--provider and its token go together: pass --provider with MILL_PROVIDER_TOKEN, --provider-token-file or --provider-token, or none of them",
      );
    }
    const dataDir = resolveDataDir(args["data-dir"]);
    const port = parsePort(args.port);
    const advertise = resolveAdvertise(args.advertise);
    // Before anything starts: a signal until the node serves undoes the init.
    const signals = stopSignals();
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
      ...(args.provider ? { provider: { name: args.provider, token: providerToken! } } : {}),
      foreground: Boolean(args.foreground),
      stopping: signals.signal,
    }).catch(failure);
    if (started.agent) {
      process.stdout.write(`Token: ${started.token}\n`);
      await runUntilSignal(started.agent, signals.signal);
      return;
    }
    // The detached node serves: the cluster exists, so the token is printed whatever comes now.
    signals.release();
    if (signals.signal.aborted) consola.info("the cluster was created before the signal came");
    consola.success(
      `cluster created; node running in the background (pid ${started.pid}, logs in ${dataDir}/mill.log)`,
    );
    process.stdout.write(`Token: ${started.token}\n`);
    consola.info(await keepAcrossReboots(dataDir, args.service).catch(failure));
  },
});

/**
 * The provider token from exactly one of --provider-token-file, MILL_PROVIDER_TOKEN and
 * --provider-token (the last is visible to every local user in the process list).
 */
async function resolveProviderToken(args: {
  readonly "provider-token"?: string;
  readonly "provider-token-file"?: string;
}): Promise<string | undefined> {
  const fromEnv = process.env.MILL_PROVIDER_TOKEN;
  const sources = [
    args["provider-token-file"] && "--provider-token-file",
    fromEnv && "MILL_PROVIDER_TOKEN",
    args["provider-token"] && "--provider-token",
  ].filter(Boolean);
  if (sources.length > 1) {
    throw new UsageError(`pass the provider token one way only, not ${sources.join(" and ")}`);
  }
  const file = args["provider-token-file"];
  if (file) {
    const text = (
      await readFile(file, "utf8").catch((error) => {
        throw new UsageError(`--provider-token-file ${file}: ${errorMessage(error)}`);
      })
    ).trim();
    if (text === "")
      throw new UsageError(`--provider-token-file ${file} is empty: put the token in it`);
    return text;
  }
  return fromEnv || args["provider-token"] || undefined;
}
