/**
 * `mill join`, the joiner's side of the exchange in lib/api/wire.ts: check the host, register with
 * the cluster, save what it answers, start the local node (detached, or in this process with
 * `foreground`) and confirm so the leader makes it a voter.
 * Owns: the joiner's steps, its requests and what it saves. Must not touch: what the running node
 * does (agent.ts), the command's flags and printing (lib/cli/join.ts).
 */
import { randomBytes } from "node:crypto";
import type { JoinConfirmResponse, JoinResponse, JoinWithdrawResponse } from "../api/wire.ts";
import {
  type JoinRequest,
  type JoinWithdrawal,
  joinProtocol,
  type MeshMode,
  registrationStatement,
  withdrawalStatement,
} from "../cluster/validate.ts";
import { ensureSecretDir } from "../identity/files.ts";
import { createNodeIdentity, nodeKeyOf, signWithNodeKey } from "../identity/node-key.ts";
import { mismatchOf } from "../identity/rotation.ts";
import { createSecret, hashSecret, parseToken } from "../identity/token.ts";
import { generateKeyPair, publicKeyFromPrivate } from "../mesh/keys.ts";
import { interfaceAddress, parseCidr } from "../mesh/plan.ts";
import { preflight } from "../mesh/preflight.ts";
import { errorMessage } from "../shared/errors.ts";
import type { NodeResources } from "../shared/node-facts.ts";
import { pollUntil } from "../shared/poll.ts";
import { compatibleProtocols, formatProtocol, PROTOCOL_VERSION } from "../shared/protocol.ts";
import { StoppedError, throwIfStopped } from "../shared/stopping.ts";
import { MILL_VERSION } from "../shared/version.ts";
import { type RunningAgent, runAgent } from "./agent.ts";
import { ApiError, callApi, type Endpoint, retryUncertain, UnreachableError } from "./client.ts";
import {
  dataDirRestorer,
  isInitialised,
  loadNode,
  type NodeConfig,
  type NodeSecrets,
  saveNode,
} from "./config.ts";
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
  /**
   * Aborted by a signal: until the node asks to become a voter, the join then withdraws its
   * registration, stops what it started, puts the data dir back as it found it and fails with a
   * StoppedError. A request in flight is answered first: its answer says what there is to undo.
   */
  readonly stopping?: AbortSignal;
}

export interface Registered {
  readonly config: NodeConfig;
  readonly secrets: NodeSecrets;
  readonly requestId: string;
}

/** A registration this join made (not a rejoin's), which it can take back if a later step fails. */
export interface NewRegistration {
  readonly clusterId: string;
  readonly nodeId: number;
  readonly nodeCertPem: string;
  readonly nodeKeyPem: string;
}

/**
 * Registers this node and saves its identity. A data dir that already holds a node keeps its keys,
 * so joining again is a rejoin of the same node and gets the same id. A fresh node's registration
 * is handed to `committed` as soon as the cluster answered, before anything here can fail.
 */
export async function register(
  options: JoinOptions,
  committed: (registration: NewRegistration) => void = () => {},
  retrying: RetryEvent = () => {},
): Promise<Registered> {
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
    protocol: PROTOCOL_VERSION,
  };
  // The same request again, should its answer be lost: the cluster registers it once.
  const answer = await retryUncertain(
    () => callApi<JoinResponse>({ endpoint: options.target, token }, "POST", "/v1/join", request),
    (error, waitMs) => retrying(retryLine("registration", error, waitMs)),
  );
  if (!previous) {
    committed({
      clusterId: answer.cluster.id,
      nodeId: answer.node.id,
      nodeCertPem: nodeIdentity.certPem,
      nodeKeyPem: nodeIdentity.keyPem,
    });
  }
  const refusal = answerProtocolProblem(answer);
  if (refusal) throw new Error(refusal);
  const mismatch = mismatchOf({ token: options.token, identity: answer.tls });
  if (mismatch !== undefined) {
    throw new Error(
      `the cluster handed out a TLS identity that does not match the token (${mismatch}); retry the join`,
    );
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

/**
 * Why this node cannot take the cluster's join answer, or undefined when it can: the answering
 * node speaks another major protocol version (an answer without one is 1.0's), or an unreadable
 * one. Nothing of the answer is saved then.
 */
export function answerProtocolProblem(answer: Pick<JoinResponse, "protocol">): string | undefined {
  const parsed = joinProtocol(answer.protocol);
  if (!parsed.ok)
    return `the cluster answered the join with an unreadable version: ${parsed.problem.error}`;
  if (compatibleProtocols(parsed.value, PROTOCOL_VERSION)) return undefined;
  return `the cluster speaks protocol ${formatProtocol(parsed.value)}, this node ${formatProtocol(PROTOCOL_VERSION)}: join with a mill of protocol ${parsed.value.major}.x, the cluster's major version`;
}

/**
 * Asks the leader to make this node a voter; resolves once that is committed. Asked again should
 * the answer be lost: promoting a voter again changes nothing.
 */
export async function confirm(
  options: JoinOptions,
  registered: Registered,
  retrying: RetryEvent = () => {},
): Promise<void> {
  const body = {
    requestId: registered.requestId,
    nodeId: registered.config.nodeId,
    wgPublicKey: publicKeyFromPrivate(registered.secrets.wgPrivateKey),
  };
  const client = { endpoint: options.target, token: parseToken(options.token), timeoutMs: 90_000 };
  await retryUncertain(
    () => callApi<JoinConfirmResponse>(client, "POST", "/v1/join/confirm", body),
    (error, waitMs) => retrying(retryLine("request to become a voter", error, waitMs)),
  );
}

/** Hears the line saying that a request of the join is tried again. */
export type RetryEvent = (line: string) => void;

const retryLine = (request: string, error: unknown, waitMs: number) =>
  `the ${request} got no answer (${errorMessage(error)}): trying it again in ${waitMs} ms`;

/** confirm, telling `reached` when it is asked and when the leader committed the voter. */
async function confirmVoter(
  options: JoinOptions,
  registered: Registered,
  reached: (confirmation: Confirmation) => void,
  retrying: RetryEvent,
): Promise<void> {
  reached("asked");
  await confirm(options, registered, retrying);
  reached("committed");
}

/**
 * Takes back a registration this join made: the cluster removes it while it is still joining
 * (never a member's). Signed with the node key, so only this node can withdraw it.
 */
export async function withdraw(
  options: JoinOptions,
  registration: NewRegistration,
): Promise<JoinWithdrawResponse> {
  const statement = withdrawalStatement(registration.clusterId, registration.nodeId);
  const body: JoinWithdrawal = {
    nodeId: registration.nodeId,
    nodeCert: registration.nodeCertPem,
    signature: signWithNodeKey(registration.nodeKeyPem, statement),
  };
  const client = { endpoint: options.target, token: parseToken(options.token) };
  // Withdrawing twice is harmless: the second finds the registration gone.
  return retryUncertain(() =>
    callApi<JoinWithdrawResponse>(client, "POST", "/v1/join/withdraw", body),
  );
}

/** A node that joined: `agent` is set when it runs in this process (`foreground`). */
export interface JoinedNode {
  readonly nodeId: number;
  readonly agent?: RunningAgent;
}

const START_TIMEOUT_MS = 30_000;

/** What a join tells its caller along the way. */
export interface JoinEvents {
  /** The cluster registered this node with this id; the node starts next. */
  registered(nodeId: number): void;
  /** A later step failed: what became of the registration (withdrawn, or why it stays). */
  withdrawal(line: string): void;
  /** A request whose answer did not come is tried again. */
  retrying: RetryEvent;
}

const QUIET: JoinEvents = { registered: () => {}, withdrawal: () => {}, retrying: () => {} };

/** How far the request to become a voter got: once asked, the node may be a voter. */
export type Confirmation = "not asked" | "asked" | "committed";

/**
 * What asking the cluster to withdraw a registration came to: `gone` means the cluster holds no
 * such join any more (withdrawn now, or already removed), `member` that the node is a member (409:
 * promoted to voter, ready or down), `unknown` that the answer said neither (unreachable, 401...).
 */
export type Withdrawal = "gone" | "member" | "unknown";

/**
 * Whether a failed join must leave its node and data dir in place: once it asked to become a
 * voter, unless the cluster says that never happened. A voter's log and keys are part of the
 * cluster's quorum, so deleting them turns a slow start into a lost member. A rejoin (no
 * registration of its own to withdraw) has `withdrawal` undefined.
 */
export function keepsNode(confirmation: Confirmation, withdrawal: Withdrawal | undefined): boolean {
  if (confirmation === "committed") return true;
  if (confirmation === "not asked") return false;
  return withdrawal !== "gone";
}

/** A join that failed after its node may have become a voter: the node and its data dir stay. */
export class NodeKeptError extends Error {
  override name = "NodeKeptError";
}

/**
 * The whole join: checks the host, registers, starts the node, confirms it as a voter and, for a
 * detached node, waits until it answers as a member. If a step after the registration fails, or
 * a signal stops the join before it confirms, the registration is withdrawn first (a fresh
 * node's; a rejoin keeps its record); then the node it started is stopped and the data dir put
 * back as the join found it (dataDirRestorer). Once the node may be a voter (keepsNode), nothing
 * is undone: a detached node keeps running, a foreground one stops with its data dir kept.
 */
export async function joinCluster(
  options: JoinOptions,
  events: JoinEvents = QUIET,
): Promise<JoinedNode> {
  // A running node's data dir is not touched: joining again is for a stopped node.
  const pid = runningPid(options.dataDir);
  if (pid !== undefined) throw new NodeRunningError(options.dataDir, pid);
  await checkHost(options);
  if (options.mesh === "wireguard") await preflight(options.meshInterface);
  const restoreDataDir = dataDirRestorer(options.dataDir);
  const started: { stop(): Promise<void> }[] = [];
  let registration: NewRegistration | undefined;
  let nodeId: number | undefined;
  let confirmation = "not asked" as Confirmation;
  try {
    return await joinSteps(
      options,
      {
        registered: (id) => {
          nodeId = id;
          events.registered(id);
        },
        committed: (made) => {
          registration = made;
        },
        confirmation: (reached) => {
          confirmation = reached;
        },
        retrying: events.retrying,
      },
      (node) => started.push(node),
    );
  } catch (error) {
    const withdrawal =
      registration && confirmation !== "committed"
        ? await withdrawn(options, registration)
        : undefined;
    if (withdrawal) events.withdrawal(withdrawal.line);
    if (keepsNode(confirmation, withdrawal?.outcome)) {
      if (options.foreground) for (const node of started) await node.stop().catch(() => {});
      const voter = confirmation === "committed" || withdrawal?.outcome === "member";
      throw keptNode(options, nodeId, voter, error);
    }
    for (const node of started) await node.stop().catch(() => {});
    await restoreDataDir();
    if (error instanceof StoppedError) {
      throw new StoppedError(`${error.message}: it did not join, and nothing runs`);
    }
    throw error;
  }
}

function keptNode(
  options: JoinOptions,
  nodeId: number | undefined,
  voter: boolean,
  cause: unknown,
): NodeKeptError {
  const node = `node ${nodeId ?? options.name} ${voter ? "is" : "may be"} a voter`;
  const next = options.foreground
    ? `its data dir is kept: start it with mill agent --data-dir ${options.dataDir}`
    : `it keeps running in the background, its data dir kept (${options.dataDir}/mill.log says more)`;
  return new NodeKeptError(
    `${errorMessage(cause)}; ${node}, so ${next}; mill status shows whether it is ready, and mill leave takes it out`,
  );
}

/** Withdraws `registration`: what came of it, and the line to show. */
async function withdrawn(
  options: JoinOptions,
  registration: NewRegistration,
): Promise<{ outcome: Withdrawal; line: string }> {
  const { nodeId } = registration;
  try {
    const answer = await withdraw(options, registration);
    const line = answer.withdrawn
      ? `withdrew its registration as node ${nodeId}`
      : `its registration as node ${nodeId} was already gone`;
    return { outcome: "gone", line };
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      return { outcome: "gone", line: `its registration as node ${nodeId} was already gone` };
    }
    const member = error instanceof ApiError && error.status === 409;
    return {
      outcome: member ? "member" : "unknown",
      line: member
        ? `did not withdraw node ${nodeId}: ${errorMessage(error)}`
        : `could not withdraw its registration as node ${nodeId} (${errorMessage(error)}): remove it with mill remove ${options.name} (a join that never finished also expires on its own)`,
    };
  }
}

async function joinSteps(
  options: JoinOptions,
  events: {
    registered(nodeId: number): void;
    committed(registration: NewRegistration): void;
    confirmation(reached: Confirmation): void;
    retrying: RetryEvent;
  },
  started: (node: { stop(): Promise<void> }) => void,
): Promise<JoinedNode> {
  const { stopping } = options;
  throwIfStopped(stopping, "before the node registered");
  // A fresh node's agent starts while the registration is in flight (its start-up is a good
  // part of a join's time); it waits for the config the registration writes.
  const early =
    !options.foreground && !isInitialised(options.dataDir)
      ? await ensureSecretDir(options.dataDir).then(() => spawnDetached(options.dataDir, true))
      : undefined;
  if (early) started(early);
  const registered = await register(options, events.committed, events.retrying);
  const { nodeId } = registered.config;
  events.registered(nodeId);
  throwIfStopped(stopping, "after the node registered");
  if (options.foreground) {
    const agent = await runAgent(options.dataDir, process.env, stopping);
    started(agent);
    // The last point a signal undoes the join: once confirmed, the node is a voter.
    throwIfStopped(stopping, "while the node started");
    await confirmVoter(options, registered, events.confirmation, events.retrying);
    return { nodeId, agent };
  }
  const local = {
    endpoint: { host: options.advertise, port: options.port },
    token: parseToken(options.token),
    timeoutMs: 2000,
  };
  // The node's API answers (503 at first) as soon as it listens; a member answers 200.
  const listening = () => {
    throwIfStopped(stopping, "while the node started");
    return callApi(local, "GET", "/v1/status").then(
      () => true,
      (error) => !(error instanceof UnreachableError),
    );
  };
  const agent = early ?? spawnDetached(options.dataDir);
  if (!early) started(agent);
  await waitUntilReady(options.dataDir, agent, listening, START_TIMEOUT_MS);
  throwIfStopped(stopping, "while the node started");
  await confirmVoter(options, registered, events.confirmation, events.retrying);
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
