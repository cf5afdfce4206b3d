/**
 * The cluster's Raft state machine: applies committed commands to ClusterState, snapshots and
 * restores it. Owns: every rule of how a command changes the state. Must not touch: I/O, clocks,
 * randomness (time arrives inside commands), Raft internals.
 *
 * Decisions recorded here:
 * - Ids come from nextNodeId and are never reused; a removed node keeps its record as "left".
 * - Mesh addresses are allocated by lib/mesh/plan.ts over every record, departed nodes included,
 *   so an address is never handed to a second node while any record of the first exists. Only
 *   when the range is otherwise full are departed nodes' addresses handed out again.
 * - A rejoin (same name, same WireGuard key, same node key) keeps id and mesh address and takes
 *   the latest endpoint, ports, resources and member secret, so a node that moved to a new IP can
 *   rejoin in place. The node key is what proves it is the same node: the WireGuard public key is
 *   public, the node key's private half never leaves the node, and the API makes the joiner prove
 *   it holds it. A record logged before nodes had keys takes the first key a rejoin brings.
 * - Left nodes free their name and key: a rebuilt VM with the same name joins as a new node.
 * - A node registered by POST /v1/join starts "joining" (NodeRegister.joining): the token alone
 *   registers it, so it gets nothing until NodeUp, committed once it is a Raft voter (which takes
 *   a running node that caught up); NodeRemove ends a join that never got there (health.ts
 *   decides both). The init node, a voter from the start, is ready at once.
 * - State values are replaced, never mutated, so `state` is a stable read-only view.
 * - Workload commands change only the workload slice, by lib/workloads/state.ts's rules, reading
 *   the node records as they are at that point of the log.
 * - A node's resources start as its registration's claim (a rejoin claims again) and are then
 *   what the node measures on its own host: the leader commits NodeResources from its heartbeats
 *   (resources.ts decides when).
 * - Draining is a flag beside the health status (NodeDrain sets it, NodeUndrain clears it); the
 *   scheduler places nothing on a draining node and moves its replicas off.
 * - ClusterProtocol only raises the committed protocol, within its major; an equal or lower one
 *   changes nothing, so the cluster protocol never goes back (protocol-gate.ts decides raises).
 * - NodeDown's default hook marks the node's allocations lost and places replacements, so the
 *   leader commits the rescheduling right after the NodeDown, in the same watchdog tick.
 */

import { allocateAddress, parseCidr } from "../mesh/plan.ts";
import type { NodeId, StateMachine } from "../raft/types.ts";
import { errorMessage } from "../shared/errors.ts";
import type { NodeResources, NodeStatus } from "../shared/node-facts.ts";
import { formatProtocol, type ProtocolVersion } from "../shared/protocol.ts";
import type { WorkloadCommand } from "../workloads/commands.ts";
import { planNodeDown } from "../workloads/scheduler.ts";
import { restoreWorkloadSnapshot, workloadSnapshot } from "../workloads/snapshot.ts";
import { applyWorkloadCommand } from "../workloads/state.ts";
import {
  type ApplyResult,
  type ClusterInit,
  type Command,
  decodeCbor,
  decodeCommand,
  encodeCbor,
  type NodeRegister,
} from "./commands.ts";
import { clusterProtocol } from "./protocol-gate.ts";
import { sameResources } from "./resources.ts";
import {
  type ClusterConfig,
  type ClusterState,
  clusterConfig,
  emptyState,
  memberNodes,
  type NodeRecord,
  nodeRecord,
  PROVIDER_TOKEN_REF,
  stateCounters,
} from "./state.ts";
import { protocolVersion } from "./validate.ts";

/**
 * Decides, when a node goes down, the commands the leader proposes next (rescheduling the node's
 * allocations). Pure: it sees the state after the node was marked down.
 */
export type NodeDownHook = (state: ClusterState, node: NodeRecord) => readonly Command[];

/** The node's live allocations are lost; their replacements go to ready nodes with room. */
export const rescheduleWorkloads: NodeDownHook = (state, node) => {
  const lost = planNodeDown(state.workloads, state.nodes, node.id, node.lastStatusChangeAt);
  return lost ? [lost] : [];
};

export interface ClusterFsmOptions {
  readonly onNodeDown?: NodeDownHook;
}

/** 2: the workload slice was added. */
const SNAPSHOT_VERSION = 2;

export class ClusterFsm implements StateMachine {
  #state: ClusterState = emptyState();
  /** The last snapshot check() parsed, until restore() takes it. */
  #checked: { readonly data: Uint8Array; readonly state: ClusterState } | undefined;
  readonly #onNodeDown: NodeDownHook;

  constructor(options: ClusterFsmOptions = {}) {
    this.#onNodeDown = options.onNodeDown ?? rescheduleWorkloads;
  }

  get state(): ClusterState {
    return this.#state;
  }

  apply(_index: number, data: Uint8Array): ApplyResult {
    const decoded = decodeCommand(data);
    if (!decoded.ok) {
      return {
        ok: false,
        code: "invalid",
        error: decoded.problem.error,
        field: decoded.problem.field,
      };
    }
    return this.#applyCommand(decoded.value);
  }

  #applyCommand(command: Command): ApplyResult {
    const state = this.#state;
    if (command.type !== "ClusterInit" && state.cluster === undefined) {
      return { ok: false, code: "uninitialised", error: "the cluster is not initialised yet" };
    }
    switch (command.type) {
      case "ClusterInit":
        return this.#init(command);
      case "NodeRegister":
        return this.#register(command);
      case "NodeDown":
        return this.#setStatus(command.id, "down", command.at);
      case "NodeUp":
        return this.#setStatus(command.id, "ready", command.at);
      case "NodeRemove":
        return this.#setStatus(command.id, "left", command.at);
      case "NodeVersion":
        return this.#setVersion(command.id, command.version);
      case "NodeResources":
        return this.#setResources(command.id, command.resources);
      case "NodeDrain":
        return this.#setDraining(command.id, true);
      case "NodeUndrain":
        return this.#setDraining(command.id, false);
      case "TokenRotate": {
        const { tokenHash, fingerprint = state.tlsFingerprint } = command;
        if (state.tokenHash === tokenHash && state.tlsFingerprint === fingerprint) {
          return { ok: true, changed: false };
        }
        this.#state = {
          ...state,
          tokenHash,
          ...(fingerprint === undefined ? {} : { tlsFingerprint: fingerprint }),
        };
        return { ok: true, changed: true };
      }
      case "ClusterProtocol":
        return this.#raiseProtocol(command);
      case "WorkloadRun":
      case "WorkloadStep":
      case "WorkloadStop":
      case "AllocationStatus":
      case "AllocationsLost":
        return this.#workload(command);
    }
  }

  #workload(command: WorkloadCommand): ApplyResult {
    const state = this.#state;
    const next = applyWorkloadCommand(state.workloads, command, state.nodes);
    if (next.state !== state.workloads) this.#state = { ...state, workloads: next.state };
    return next.result;
  }

  #init(command: ClusterInit): ApplyResult {
    const existing = this.#state.cluster;
    if (existing) {
      return existing.id === command.clusterId
        ? { ok: true, changed: false }
        : {
            ok: false,
            code: "conflict",
            error: `this node already belongs to cluster ${existing.id}: use a fresh data dir to start another`,
          };
    }
    const cluster: ClusterConfig = {
      id: command.clusterId,
      ...(command.name === undefined ? {} : { name: command.name }),
      createdAt: command.createdAt,
      mesh: command.mesh,
      meshCidr: command.meshCidr,
      ...(command.provider
        ? { provider: { name: command.provider.name, tokenRef: PROVIDER_TOKEN_REF } }
        : {}),
    };
    // Only logs written before the token stayed node-local carry it (see commands.ts).
    const secrets: Record<string, string> =
      command.provider?.token === undefined ? {} : { [PROVIDER_TOKEN_REF]: command.provider.token };
    this.#state = { ...this.#state, cluster, tokenHash: command.tokenHash, secrets };
    return { ok: true, changed: true };
  }

  #register(command: NodeRegister): ApplyResult {
    const state = this.#state;
    const clash = registrationConflict(state, command);
    if (clash) return clash;
    const byName = memberNodes(state).find((node) => node.name === command.name);
    if (byName) return this.#rejoin(byName, command);
    let meshAddress: string;
    try {
      meshAddress = allocateMeshAddress(state);
    } catch (error) {
      return { ok: false, code: "full", error: errorMessage(error) };
    }
    const node: NodeRecord = {
      id: state.nextNodeId,
      name: command.name,
      advertise: command.advertise,
      apiPort: command.apiPort,
      raftPort: command.raftPort,
      meshAddress,
      wgPublicKey: command.wgPublicKey,
      wgPort: command.wgPort,
      resources: command.resources,
      status: command.joining ? "joining" : "ready",
      joinedAt: command.at,
      lastStatusChangeAt: command.at,
      memberSecretHash: command.memberSecretHash,
      ...(command.nodeKey === undefined ? {} : { nodeKey: command.nodeKey }),
      ...(command.version === undefined ? {} : { version: command.version }),
    };
    this.#state = {
      ...state,
      nodes: withNode(state, node),
      nextNodeId: state.nextNodeId + 1,
      peersVersion: state.peersVersion + 1,
    };
    return { ok: true, changed: true, node };
  }

  #rejoin(existing: NodeRecord, command: NodeRegister): ApplyResult {
    const updated: NodeRecord = {
      ...existing,
      advertise: command.advertise,
      apiPort: command.apiPort,
      raftPort: command.raftPort,
      wgPort: command.wgPort,
      resources: command.resources,
      memberSecretHash: command.memberSecretHash,
      ...(command.nodeKey === undefined ? {} : { nodeKey: command.nodeKey }),
      ...(command.version === undefined ? {} : { version: command.version }),
    };
    const peerChanged =
      existing.nodeKey !== updated.nodeKey ||
      existing.advertise !== updated.advertise ||
      existing.apiPort !== updated.apiPort ||
      existing.raftPort !== updated.raftPort ||
      existing.wgPort !== updated.wgPort;
    const changed =
      peerChanged ||
      !sameResources(existing.resources, updated.resources) ||
      existing.memberSecretHash !== updated.memberSecretHash ||
      existing.version !== updated.version;
    if (!changed) return { ok: true, changed: false, node: existing };
    const state = this.#state;
    this.#state = {
      ...state,
      nodes: withNode(state, updated),
      peersVersion: state.peersVersion + (peerChanged ? 1 : 0),
    };
    return { ok: true, changed: true, node: updated };
  }

  #setStatus(id: NodeId, status: NodeStatus, at: number): ApplyResult {
    const state = this.#state;
    const node = state.nodes.get(id);
    if (!node) return { ok: false, code: "unknown-node", error: `there is no node ${id}` };
    if (node.status === status || node.status === "left") return { ok: true, changed: false, node };
    const updated: NodeRecord = { ...node, status, lastStatusChangeAt: at };
    this.#state = {
      ...state,
      nodes: withNode(state, updated),
      peersVersion: state.peersVersion + (status === "left" ? 1 : 0),
    };
    if (status !== "down") return { ok: true, changed: true, node: updated };
    return {
      ok: true,
      changed: true,
      node: updated,
      followUps: this.#onNodeDown(this.#state, updated),
    };
  }

  /** A node restarted on another build reports it; nothing else of its record changes. */
  #setVersion(id: NodeId, version: string): ApplyResult {
    const state = this.#state;
    const node = state.nodes.get(id);
    if (!node || node.status === "left") {
      return { ok: false, code: "unknown-node", error: `there is no node ${id}` };
    }
    if (node.version === version) return { ok: true, changed: false, node };
    const updated: NodeRecord = { ...node, version };
    this.#state = { ...state, nodes: withNode(state, updated) };
    return { ok: true, changed: true, node: updated };
  }

  /** A node's own measurement replaces what its record said; nothing else of it changes. */
  #setResources(id: NodeId, resources: NodeResources): ApplyResult {
    const state = this.#state;
    const node = state.nodes.get(id);
    if (!node || node.status === "left") {
      return { ok: false, code: "unknown-node", error: `there is no node ${id}` };
    }
    if (sameResources(node.resources, resources)) return { ok: true, changed: false, node };
    const updated: NodeRecord = { ...node, resources };
    this.#state = { ...state, nodes: withNode(state, updated) };
    return { ok: true, changed: true, node: updated };
  }

  /** Draining is apart from health: a node keeps it through NodeDown and NodeUp. */
  #setDraining(id: NodeId, draining: boolean): ApplyResult {
    const state = this.#state;
    const node = state.nodes.get(id);
    if (!node || node.status === "left") {
      return { ok: false, code: "unknown-node", error: `there is no node ${id}` };
    }
    if ((node.draining === true) === draining) return { ok: true, changed: false, node };
    const { draining: _was, ...rest } = node;
    const updated: NodeRecord = draining ? { ...rest, draining: true } : rest;
    this.#state = { ...state, nodes: withNode(state, updated) };
    return { ok: true, changed: true, node: updated };
  }

  #raiseProtocol(raised: ProtocolVersion): ApplyResult {
    const state = this.#state;
    const current = clusterProtocol(state);
    if (raised.major !== current.major) {
      return {
        ok: false,
        code: "invalid",
        error: `the cluster speaks protocol ${formatProtocol(current)}: another major version cannot be committed`,
        field: "major",
      };
    }
    if (raised.minor <= current.minor) return { ok: true, changed: false };
    this.#state = { ...state, clusterProtocol: { major: raised.major, minor: raised.minor } };
    return { ok: true, changed: true };
  }

  /** Deterministic bytes: fixed key order, nodes and secrets sorted, optional fields omitted. */
  snapshot(): Uint8Array {
    const state = this.#state;
    return encodeCbor({
      v: SNAPSHOT_VERSION,
      cluster: state.cluster ? clusterConfig.pick(state.cluster) : null,
      tokenHash: state.tokenHash,
      // Left out until a rotation commits one, so states (and digests) from before are unchanged.
      ...(state.tlsFingerprint === undefined ? {} : { tlsFingerprint: state.tlsFingerprint }),
      // Likewise until the first raise: a cluster at the baseline keeps its old bytes.
      ...(state.clusterProtocol === undefined
        ? {}
        : { clusterProtocol: protocolVersion.pick(state.clusterProtocol) }),
      secrets: Object.keys(state.secrets)
        .sort()
        .map((ref) => [ref, state.secrets[ref]]),
      nodes: [...state.nodes.values()].sort((a, b) => a.id - b.id).map(nodeRecord.pick),
      nextNodeId: state.nextNodeId,
      peersVersion: state.peersVersion,
      workloads: workloadSnapshot(state.workloads),
    });
  }

  /**
   * Throws a one-line error if `data` is not a snapshot restore() accepts. The driver calls it
   * before it persists a snapshot it received; the parse is kept, so the restore that follows
   * does not parse the same bytes again.
   */
  check(data: Uint8Array): void {
    if (this.#checked?.data !== data) this.#checked = { data, state: parseSnapshot(data) };
  }

  /** Replaces the whole state; throws on bytes that are not a snapshot of this format. */
  restore(data: Uint8Array): void {
    this.check(data);
    this.#state = this.#checked!.state;
    this.#checked = undefined;
  }
}

/**
 * The conflict a registration meets in `state`: its name taken by another key, or its key taken
 * by another name. The API checks this before proposing, so a clash never reaches the log; the
 * FSM checks it again on apply, where it decides.
 */
export function registrationConflict(
  state: ClusterState,
  registration: Pick<NodeRegister, "name" | "wgPublicKey" | "nodeKey">,
): ApplyResult | undefined {
  const members = memberNodes(state);
  const byName = members.find((node) => node.name === registration.name);
  const byKey = members.find((node) => node.wgPublicKey === registration.wgPublicKey);
  const byNodeKey =
    registration.nodeKey === undefined
      ? undefined
      : members.find((node) => node.nodeKey === registration.nodeKey);
  if (byName && byName.wgPublicKey !== registration.wgPublicKey) {
    return conflict(
      "name",
      `name ${registration.name} is taken by node ${byName.id} with another WireGuard key: pass another --name, or rejoin from the data dir that holds that node's key`,
    );
  }
  if (byName?.nodeKey !== undefined && byName.nodeKey !== registration.nodeKey) {
    return conflict(
      "nodeKey",
      `name ${registration.name} is taken by node ${byName.id} with another node key: pass another --name, or rejoin from the data dir that holds that node's key`,
    );
  }
  if (byKey && byKey !== byName) {
    return conflict(
      "wgPublicKey",
      `this WireGuard key already belongs to node ${byKey.id} (${byKey.name}): each node needs its own key, so join from a fresh data dir`,
    );
  }
  if (byNodeKey && byNodeKey !== byName) {
    return conflict(
      "nodeKey",
      `this node key already belongs to node ${byNodeKey.id} (${byNodeKey.name}): each node needs its own key, so join from a fresh data dir`,
    );
  }
  return undefined;
}

function conflict(field: string, error: string): ApplyResult {
  return { ok: false, code: "conflict", error, field };
}

function withNode(state: ClusterState, node: NodeRecord): Map<NodeId, NodeRecord> {
  return new Map(state.nodes).set(node.id, node);
}

function allocateMeshAddress(state: ClusterState): string {
  const cidr = parseCidr(state.cluster!.meshCidr);
  const everyRecord = [...state.nodes.values()].map((node) => node.meshAddress);
  try {
    return allocateAddress(cidr, everyRecord);
  } catch {
    return allocateAddress(
      cidr,
      memberNodes(state).map((node) => node.meshAddress),
    );
  }
}

function parseSnapshot(data: Uint8Array): ClusterState {
  let raw: Record<string, unknown>;
  try {
    raw = decodeCbor(data) as Record<string, unknown>;
  } catch {
    throw new Error("cluster snapshot is not valid CBOR");
  }
  const refuse = (error: string) => new Error(`cannot restore the cluster snapshot: ${error}`);
  if (raw?.v !== SNAPSHOT_VERSION) {
    throw refuse(`cluster snapshot has format ${String(raw?.v)}, expected ${SNAPSHOT_VERSION}`);
  }
  const counters = stateCounters.parse(raw, "");
  if (!counters.ok) throw refuse(counters.problem.error);
  const cluster = raw.cluster === null ? undefined : clusterConfig.parse(raw.cluster, "cluster");
  if (cluster && !cluster.ok) throw refuse(cluster.problem.error);
  if (!Array.isArray(raw.nodes) || !Array.isArray(raw.secrets)) {
    throw refuse("cluster snapshot lacks its node or secret list");
  }
  const secrets = raw.secrets as unknown[];
  if (!secrets.every((pair) => Array.isArray(pair) && pair.length === 2 && pair.every(isText))) {
    throw refuse("secrets is not a list of [reference, value] strings");
  }
  const nodes = new Map<NodeId, NodeRecord>();
  for (const [i, entry] of raw.nodes.entries()) {
    const node = nodeRecord.parse(entry, `nodes[${i}]`);
    if (!node.ok) throw refuse(node.problem.error);
    nodes.set(node.value.id, node.value);
  }
  let workloads: ClusterState["workloads"];
  try {
    workloads = restoreWorkloadSnapshot(raw.workloads);
  } catch (error) {
    throw refuse(errorMessage(error));
  }
  return {
    ...(cluster ? { cluster: cluster.value } : {}),
    tokenHash: counters.value.tokenHash,
    ...(counters.value.tlsFingerprint === undefined
      ? {}
      : { tlsFingerprint: counters.value.tlsFingerprint }),
    ...(counters.value.clusterProtocol === undefined
      ? {}
      : { clusterProtocol: counters.value.clusterProtocol }),
    secrets: Object.fromEntries(secrets as [string, string][]),
    nodes,
    nextNodeId: counters.value.nextNodeId,
    peersVersion: counters.value.peersVersion,
    workloads,
  };
}

function isText(value: unknown): value is string {
  return typeof value === "string";
}
