/**
 * `mill join`, the joiner's side of the exchange in lib/api/wire.ts: check the host, register with
 * the cluster, save what it answers, start the local node (detached, or in this process with
 * `foreground`) and confirm so the leader makes it a voter.
 * Owns: the joiner's steps, its requests and what it saves. Must not touch: what the running node
 * does (agent.ts), the command's flags and printing (lib/cli/join.ts).
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import type { JoinConfirmResponse, JoinResponse } from "../api/wire.ts";
import { type JoinRequest, type MeshMode, registrationStatement } from "../cluster/validate.ts";
import { ensureSecretDir } from "../identity/files.ts";
import { fingerprintOfPem } from "../identity/fingerprint.ts";
import { createNodeIdentity, nodeKeyOf, signWithNodeKey } from "../identity/node-key.ts";
import { createSecret, hashSecret, parseToken } from "../identity/token.ts";
import { generateKeyPair, publicKeyFromPrivate } from "../mesh/keys.ts";
import { interfaceAddress, parseCidr } from "../mesh/plan.ts";
import { preflight } from "../mesh/preflight.ts";
import type { NodeResources } from "../shared/node-facts.ts";
import { pollUntil } from "../shared/poll.ts";
import { MILL_VERSION } from "../shared/version.ts";
import { type RunningAgent, runAgent } from "./agent.ts";
import { callApi, type Endpoint, UnreachableError } from "./client.ts";
import { isInitialised, loadNode, type NodeConfig, type NodeSecrets, saveNode } from "./config.ts";
import { NodeRunningError, runningPid, spawnDetached, waitUntilReady } from "./daemon.ts";
import { checkHost } from "./host-checks.ts";

export interface JoinOptions {
  readonly dataDir: string;
  readonly target: Endpoint;
  readonly token: string;
  readonly name: string;
  readonly advertise: string;
  readonly port: number;
  readonly mesh: MeshMode;
  readonly meshInterface: string;
  readonly resources: NodeResources;
  /** Run the node in this process (the caller keeps it running) instead of detaching it. */
  readonly foreground: boolean;
}

export interface Registered {
  readonly config: NodeConfig;
  readonly secrets: NodeSecrets;
  readonly requestId: string;
}

/**
 * Registers this node and saves its identity. A data dir that already holds a node keeps its keys,
 * so joining again is a rejoin of the same node and gets the same id.
 */
export async function register(options: JoinOptions): Promise<Registered> {
  const token = parseToken(options.token);
  const previous = isInitialised(options.dataDir) ? await loadNode(options.dataDir) : undefined;
  const wgPrivateKey = previous?.secrets.wgPrivateKey ?? generateKeyPair().privateKey;
  const memberSecret = previous?.secrets.memberSecret ?? createSecret();
  // The node key proves a rejoin is the same node, so a data dir keeps the one it has.
  const nodeIdentity = previous
    ? { certPem: previous.secrets.nodeCertPem, keyPem: previous.secrets.nodeKeyPem }
    : createNodeIdentity();
  const requestId = randomBytes(16).toString("base64url");
  const unsigned = {
    requestId,
    name: options.name,
    advertise: options.advertise,
    apiPort: options.port,
    raftPort: options.port + 1,
    wgPort: options.port,
    wgPublicKey: publicKeyFromPrivate(wgPrivateKey),
    resources: options.resources,
    memberSecretHash: hashSecret(memberSecret),
    nodeKey: nodeKeyOf(nodeIdentity.certPem),
    version: MILL_VERSION,
    mesh: options.mesh,
    nodeCert: nodeIdentity.certPem,
  };
  // Proof that this node holds the key it registers (a rejoin under a taken name needs it).
  const request: JoinRequest = {
    ...unsigned,
    signature: signWithNodeKey(nodeIdentity.keyPem, registrationStatement(unsigned)),
  };
  const answer = await callApi<JoinResponse>(
    { endpoint: options.target, token },
    "POST",
    "/v1/join",
    request,
  );
  if (fingerprintOfPem(answer.tls.certPem) !== token.fingerprint) {
    throw new Error("the cluster handed out a TLS identity that does not match the token");
  }
  const config: NodeConfig = {
    version: 1,
    clusterId: answer.cluster.id,
    nodeId: answer.node.id,
    name: options.name,
    advertise: options.advertise,
    apiPort: request.apiPort,
    raftPort: request.raftPort,
    wgPort: request.wgPort,
    mesh: answer.cluster.mesh,
    meshInterface: options.meshInterface,
    meshInterfaceAddress: interfaceAddress(
      parseCidr(answer.cluster.meshCidr),
      answer.node.meshAddress,
    ),
    seeds: answer.peers,
  };
  const secrets: NodeSecrets = {
    token: options.token.trim(),
    memberSecret,
    tlsCertPem: answer.tls.certPem,
    tlsKeyPem: answer.tls.keyPem,
    wgPrivateKey,
    nodeCertPem: nodeIdentity.certPem,
    nodeKeyPem: nodeIdentity.keyPem,
  };
  await saveNode(options.dataDir, config, secrets);
  return { config, secrets, requestId };
}

/** Asks the leader to make this node a voter; resolves once that is committed. */
export async function confirm(options: JoinOptions, registered: Registered): Promise<void> {
  await callApi<JoinConfirmResponse>(
    { endpoint: options.target, token: parseToken(options.token), timeoutMs: 90_000 },
    "POST",
    "/v1/join/confirm",
    {
      requestId: registered.requestId,
      nodeId: registered.config.nodeId,
      wgPublicKey: publicKeyFromPrivate(registered.secrets.wgPrivateKey),
    },
  );
}

/** A node that joined: `agent` is set when it runs in this process (`foreground`). */
export interface JoinedNode {
  readonly nodeId: number;
  readonly agent?: RunningAgent;
}

const START_TIMEOUT_MS = 30_000;

/**
 * The whole join: checks the host, registers, starts the node, confirms it as a voter and, for a
 * detached node, waits until it answers as a member. `onRegistered` hears the id it got. If a
 * step fails, the node it started is stopped and a data dir it created is removed again.
 */
export async function joinCluster(
  options: JoinOptions,
  onRegistered: (nodeId: number) => void = () => {},
): Promise<JoinedNode> {
  // A running node's data dir is not touched: joining again is for a stopped node.
  const pid = runningPid(options.dataDir);
  if (pid !== undefined) throw new NodeRunningError(options.dataDir, pid);
  await checkHost(options);
  if (options.mesh === "wireguard") await preflight(options.meshInterface);
  const created = !existsSync(options.dataDir);
  const started: { stop(): Promise<void> }[] = [];
  try {
    return await joinSteps(options, onRegistered, (node) => started.push(node));
  } catch (error) {
    for (const node of started) await node.stop().catch(() => {});
    if (created) await rm(options.dataDir, { recursive: true, force: true });
    throw error;
  }
}

async function joinSteps(
  options: JoinOptions,
  onRegistered: (nodeId: number) => void,
  started: (node: { stop(): Promise<void> }) => void,
): Promise<JoinedNode> {
  // A fresh node's agent starts while the registration is in flight (its start-up is a good
  // part of a join's time); it waits for the config the registration writes.
  const early =
    !options.foreground && !isInitialised(options.dataDir)
      ? await ensureSecretDir(options.dataDir).then(() => spawnDetached(options.dataDir, true))
      : undefined;
  if (early) started(early);
  const registered = await register(options);
  const { nodeId } = registered.config;
  onRegistered(nodeId);
  if (options.foreground) {
    const agent = await runAgent(options.dataDir);
    started(agent);
    await confirm(options, registered);
    return { nodeId, agent };
  }
  const local = {
    endpoint: { host: options.advertise, port: options.port },
    token: parseToken(options.token),
    timeoutMs: 2000,
  };
  // The node's API answers (503 at first) as soon as it listens; a member answers 200.
  const listening = () =>
    callApi(local, "GET", "/v1/status").then(
      () => true,
      (error) => !(error instanceof UnreachableError),
    );
  const agent = early ?? spawnDetached(options.dataDir);
  if (!early) started(agent);
  await waitUntilReady(options.dataDir, agent, listening, START_TIMEOUT_MS);
  await confirm(options, registered);
  const member = () =>
    callApi(local, "GET", "/v1/status").then(
      () => true,
      () => false,
    );
  await pollUntil(
    member,
    START_TIMEOUT_MS,
    () => new Error("the node joined but does not answer as a member; see its mill.log"),
  );
  return { nodeId };
}
