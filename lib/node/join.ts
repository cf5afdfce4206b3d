/**
 * `mill join`, the joiner's side of the exchange in lib/api/wire.ts: register with the cluster,
 * save what it answers, and (once the local node runs) confirm so the leader makes it a voter.
 * Owns: the joiner's requests and what it saves. Must not touch: running the node (agent.ts).
 */
import { randomBytes } from "node:crypto";
import type { JoinConfirmResponse, JoinResponse } from "../api/wire.ts";
import type { MeshMode } from "../cluster/state.ts";
import type { JoinRequest } from "../cluster/validate.ts";
import { fingerprintOfPem } from "../identity/fingerprint.ts";
import { createSecret, hashSecret, parseToken } from "../identity/token.ts";
import { generateKeyPair, publicKeyFromPrivate } from "../mesh/keys.ts";
import { interfaceAddress, parseCidr } from "../mesh/plan.ts";
import { callApi, type Endpoint } from "./client.ts";
import { isInitialised, loadNode, type NodeConfig, type NodeSecrets, saveNode } from "./config.ts";
import type { Resources } from "./host.ts";

export interface JoinOptions {
  readonly dataDir: string;
  readonly target: Endpoint;
  readonly token: string;
  readonly name: string;
  readonly advertise: string;
  readonly port: number;
  readonly mesh: MeshMode;
  readonly meshInterface: string;
  readonly resources: Resources;
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
  const requestId = randomBytes(16).toString("base64url");
  const request: JoinRequest = {
    requestId,
    name: options.name,
    advertise: options.advertise,
    apiPort: options.port,
    raftPort: options.port + 1,
    wgPort: options.port,
    wgPublicKey: publicKeyFromPrivate(wgPrivateKey),
    resources: options.resources,
    memberSecretHash: hashSecret(memberSecret),
    mesh: options.mesh,
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
