/**
 * The cluster's replicated state: what every node agrees on through the Raft log.
 * Owns: the shape of that state (its records declared as schemas, which snapshots read and write
 * them through) and read-only queries over it. Must not touch: I/O, clocks,
 * randomness, the encoding of commands (commands.ts) or how they change the state (fsm.ts).
 *
 * Secrets held here (the provider token, hashes of the join token and of each member's secret)
 * never leave through a view: views.ts builds every answer from an explicit list of fields.
 */

import type { NodeId } from "../raft/types.ts";
import { checkCount, type Rule } from "../shared/fields.ts";
import { NODE_STATUSES, type NodeStatus } from "../shared/node-facts.ts";
import type { ProtocolVersion } from "../shared/protocol.ts";
import { type Infer, leaf, object, optional } from "../shared/schema.ts";
import { emptyWorkloadState, type WorkloadState } from "../workloads/state.ts";
import {
  checkCertificateFingerprint,
  checkIp,
  checkMesh,
  type MeshMode,
  nodeRegistration,
  protocolVersion,
} from "./validate.ts";

// Looser than the command rules: these read records back from a snapshot of applied state.
const isString: Rule = (value, field) =>
  typeof value === "string" ? undefined : `${field} is not a string`;
const isStatus: Rule = (value, field) =>
  NODE_STATUSES.includes(value as NodeStatus) ? undefined : `${field} is not a status`;
const isTrue: Rule = (value, field) => (value === true ? undefined : `${field} is not true`);

/** The cluster's configuration, as ClusterInit set it (snapshots carry it in this shape). */
export const clusterConfig = object({
  /** Random at init; tells two clusters apart (a node never joins a second cluster by mistake). */
  id: leaf<string>(isString),
  name: optional(leaf<string>(isString)),
  /** Milliseconds since the epoch, from the init node's clock. */
  createdAt: leaf<number>(checkCount),
  mesh: leaf<MeshMode>(checkMesh),
  meshCidr: leaf<string>(isString),
  /** The provider token itself lives in `secrets[tokenRef]`. */
  provider: optional(object({ name: leaf<string>(isString), tokenRef: leaf<string>(isString) })),
});

export type ClusterConfig = Infer<typeof clusterConfig>;

/** A node's record: its latest registration and what the cluster decided about it. */
export const nodeRecord = object({
  id: leaf<NodeId>(checkCount),
  ...nodeRegistration.shape,
  /** Assigned from `cluster.meshCidr` at registration, without prefix: "10.99.0.2". */
  meshAddress: leaf<string>(checkIp),
  status: leaf<NodeStatus>(isStatus),
  /**
   * Set by NodeDrain, cleared by NodeUndrain: nothing new is placed here and the leader moves
   * the node's replicas off. Kept apart from `status` (health), so a draining node that goes
   * down and comes back is still draining. Absent rather than false, so records (and the
   * snapshots and digests made of them) of nodes never drained are unchanged.
   */
  draining: optional(leaf<true>(isTrue)),
  joinedAt: leaf<number>(checkCount),
  lastStatusChangeAt: leaf<number>(checkCount),
});

export type NodeRecord = Infer<typeof nodeRecord>;

/** The state's scalar fields, as a snapshot carries them beside its records. */
export const stateCounters = object({
  tokenHash: leaf<string>(isString),
  tlsFingerprint: optional(leaf<string>(checkCertificateFingerprint)),
  clusterProtocol: optional(protocolVersion),
  nextNodeId: leaf<NodeId>(checkCount),
  peersVersion: leaf<number>(checkCount),
});

export interface ClusterState {
  /** Undefined until the ClusterInit entry is applied. */
  readonly cluster?: ClusterConfig;
  /** sha256 hex of the join token's secret; never the secret. Empty before init. */
  readonly tokenHash: string;
  /**
   * The fingerprint of the public TLS identity the current token pins, committed by each
   * `mill token rotate`; absent until the first one (every node then serves the identity init made).
   */
  readonly tlsFingerprint?: string;
  /**
   * The protocol the whole cluster speaks, committed by ClusterProtocol; absent until the first
   * one, which means the baseline 1.0 (lib/cluster/protocol-gate.ts reads it).
   */
  readonly clusterProtocol?: ProtocolVersion;
  /** Cluster secrets by reference (the provider token). */
  readonly secrets: Readonly<Record<string, string>>;
  readonly nodes: ReadonlyMap<NodeId, NodeRecord>;
  /** Ids are handed out in order and never reused, not even after a node left. */
  readonly nextNodeId: NodeId;
  /** Bumped whenever a node's key, endpoint, mesh address or membership changes. */
  readonly peersVersion: number;
  /** Workloads and their allocations (lib/workloads/state.ts owns their rules). */
  readonly workloads: WorkloadState;
}

export const PROVIDER_TOKEN_REF = "provider-token";

export function emptyState(): ClusterState {
  return {
    tokenHash: "",
    secrets: {},
    nodes: new Map(),
    nextNodeId: 1,
    peersVersion: 0,
    workloads: emptyWorkloadState(),
  };
}

/** Nodes that are members (not left), ordered by id. */
export function memberNodes(state: ClusterState): NodeRecord[] {
  return [...state.nodes.values()]
    .filter((node) => node.status !== "left")
    .sort((a, b) => a.id - b.id);
}

export function memberByName(state: ClusterState, name: string): NodeRecord | undefined {
  return memberNodes(state).find((node) => node.name === name);
}

/**
 * The host node-to-node traffic (Raft, heartbeats) uses for `node`: its mesh address inside the
 * WireGuard mesh, its advertise address with `--mesh none`.
 */
export function internalHost(state: ClusterState, node: NodeRecord): string {
  return state.cluster?.mesh === "wireguard" ? node.meshAddress : node.advertise;
}
