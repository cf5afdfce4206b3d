/**
 * `mill init`: checks the host, creates a new cluster's identity on this host — TLS identity, join
 * token, WireGuard key, member secret, this node's own key — and the bootstrap entries that the node commits first when
 * it starts, then starts the node (detached, or in this process with `foreground`). A signal
 * before the node serves undoes all of it (`stopping`).
 * Owns: init's steps and what a brand-new cluster is made of. Must not touch: what the running
 * node does (agent.ts), the command's flags and printing (lib/cli/init.ts).
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { MeshMode } from "../cluster/validate.ts";
import { writeSecretFile } from "../identity/files.ts";
import { createNodeIdentity, nodeKeyOf } from "../identity/node-key.ts";
import { createCredentials } from "../identity/rotation.ts";
import { createSecret, hashSecret, parseToken, TOKEN_PREFIX } from "../identity/token.ts";
import { generateKeyPair } from "../mesh/keys.ts";
import { allocateAddress, interfaceAddress, parseCidr } from "../mesh/plan.ts";
import { preflight } from "../mesh/preflight.ts";
import type { NodeResources } from "../shared/node-facts.ts";
import { pollUntil } from "../shared/poll.ts";
import { StoppedError, throwIfStopped } from "../shared/stopping.ts";
import { MILL_VERSION } from "../shared/version.ts";
import { type RunningAgent, runAgent } from "./agent.ts";
import { callApi } from "./client.ts";
import { dataDirRestorer, isInitialised, type NodeConfig, saveNode } from "./config.ts";
import { runningPid, startDetached } from "./daemon.ts";
import { checkHost } from "./host-checks.ts";

export interface InitOptions {
  readonly dataDir: string;
  readonly name: string;
  readonly advertise: string;
  readonly port: number;
  readonly mesh: MeshMode;
  readonly meshCidr: string;
  readonly meshInterface: string;
  readonly resources: NodeResources;
  /** An operator-chosen token whose secret the cluster adopts (its fingerprint is replaced). */
  readonly token?: string;
  readonly provider?: { readonly name: string; readonly token: string };
  /** Run the node in this process (the caller keeps it running) instead of detaching it. */
  readonly foreground: boolean;
  /**
   * Aborted by a signal: until the node serves, init then stops what it started, puts the data
   * dir back as it found it and fails with a StoppedError.
   */
  readonly stopping?: AbortSignal;
}

/** The new cluster's token and its first node: in this process (`agent`) or detached (`pid`). */
export type StartedCluster = { readonly token: string } & (
  | { readonly agent: RunningAgent; readonly pid?: undefined }
  | { readonly pid: number; readonly agent?: undefined }
);

const SERVE_TIMEOUT_MS = 30_000;

/** The whole init: checks the host, writes the new node, starts it and waits until it serves. */
export async function initCluster(options: InitOptions): Promise<StartedCluster> {
  refuseInitialised(options.dataDir);
  await checkHost(options);
  if (options.mesh === "wireguard") await preflight(options.meshInterface);
  const restoreDataDir = dataDirRestorer(options.dataDir);
  try {
    return await startCluster(options);
  } catch (error) {
    // Nothing runs any more (startDetached stopped its node): leave the host as it was.
    await restoreDataDir();
    if (error instanceof StoppedError) {
      throw new StoppedError(`${error.message}: no cluster was created, and nothing runs`);
    }
    throw error;
  }
}

async function startCluster(options: InitOptions): Promise<StartedCluster> {
  const { stopping } = options;
  throwIfStopped(stopping, "before the node started");
  const token = await createCluster(options);
  const client = {
    endpoint: { host: options.advertise, port: options.port },
    token: parseToken(token),
    timeoutMs: 2000,
  };
  const serving = () => {
    throwIfStopped(stopping, "while the node started");
    return callApi(client, "GET", "/v1/status").then(
      () => true,
      () => false,
    );
  };
  if (!options.foreground) {
    return { token, pid: await startDetached(options.dataDir, serving, SERVE_TIMEOUT_MS) };
  }
  const agent = await runAgent(options.dataDir, process.env, stopping);
  await pollUntil(
    serving,
    SERVE_TIMEOUT_MS,
    () => new Error(`the node did not serve within ${SERVE_TIMEOUT_MS / 1000} s`),
  ).catch(async (error: unknown) => {
    await agent.stop();
    throw error;
  });
  return { token, agent };
}

/** Init makes a new node: a data dir that holds one already is refused before anything runs. */
function refuseInitialised(dataDir: string): void {
  const pid = runningPid(dataDir);
  if (pid !== undefined) {
    throw new Error(`already initialised: a Mill node runs in ${dataDir} (pid ${pid})`);
  }
  if (isInitialised(dataDir)) {
    throw new Error(
      `already initialised: ${dataDir} holds a Mill node; start it with \`mill agent --data-dir ${dataDir}\`, or pick another --data-dir`,
    );
  }
}

/** The secret of a token given to `init --token`: a whole token, or `mill_t_` and a secret. */
export function secretFromTokenFlag(text: string): string {
  const secretOnly = new RegExp(`^${TOKEN_PREFIX}([a-z2-7]{32})$`).exec(text.trim().toLowerCase());
  if (secretOnly) return secretOnly[1]!;
  return parseToken(text).secret;
}

/** Writes the new node to `options.dataDir` and returns the cluster's join token. */
async function createCluster(options: InitOptions): Promise<string> {
  const cidr = parseCidr(options.meshCidr);
  const secret = options.token ? secretFromTokenFlag(options.token) : createSecret();
  const { token, identity } = createCredentials(options.advertise, secret);
  const wireguard = generateKeyPair();
  const memberSecret = createSecret();
  const node = createNodeIdentity();
  const now = Date.now();
  const clusterId = randomBytes(8).toString("hex");
  const registration = {
    name: options.name,
    advertise: options.advertise,
    apiPort: options.port,
    raftPort: options.port + 1,
    wgPort: options.port,
    wgPublicKey: wireguard.publicKey,
    resources: options.resources,
    memberSecretHash: hashSecret(memberSecret),
    nodeKey: nodeKeyOf(node.certPem),
    version: MILL_VERSION,
  };
  // The first node's mesh address is the first the state machine will hand out.
  const meshAddress = allocateAddress(cidr, []);
  const config: NodeConfig = {
    version: 1,
    clusterId,
    nodeId: 1,
    name: options.name,
    advertise: options.advertise,
    apiPort: registration.apiPort,
    raftPort: registration.raftPort,
    wgPort: registration.wgPort,
    mesh: options.mesh,
    meshInterface: options.meshInterface,
    meshInterfaceAddress: interfaceAddress(cidr, meshAddress),
    seeds: [],
    bootstrap: {
      init: {
        type: "ClusterInit",
        clusterId,
        createdAt: now,
        mesh: options.mesh,
        meshCidr: options.meshCidr,
        tokenHash: hashSecret(secret),
        ...(options.provider ? { provider: { name: options.provider.name } } : {}),
      },
      register: { type: "NodeRegister", ...registration, at: now },
    },
  };
  await saveNode(options.dataDir, config, {
    token,
    memberSecret,
    tlsCertPem: identity.certPem,
    tlsKeyPem: identity.keyPem,
    wgPrivateKey: wireguard.privateKey,
    nodeCertPem: node.certPem,
    nodeKeyPem: node.keyPem,
  });
  if (options.provider) {
    await writeSecretFile(join(options.dataDir, PROVIDER_TOKEN_FILE), options.provider.token);
  }
  return token;
}

/** Where the init node keeps the provider's API token (0600): never in the Raft log. */
export const PROVIDER_TOKEN_FILE = "provider.token";
