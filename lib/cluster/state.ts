/**
 * The cluster's replicated state: what every node agrees on through the Raft log.
 * Owns: the shape of that state and read-only queries over it. Must not touch: I/O, clocks,
 * randomness, the encoding of commands (commands.ts) or how they change the state (fsm.ts).
 *
 * Secrets held here (the provider token, hashes of the join token and of each member's secret)
 * never leave through a view: views.ts builds every answer from an explicit list of fields.
 */

import type { NodeId } from "../raft/types.ts";
import type { NodeResources, NodeStatus } from "../shared/node-facts.ts";
import { emptyWorkloadState, type WorkloadState } from "../workloads/state.ts";

/** How node-to-node traffic travels; chosen at init, every node must run the same. */
export type MeshMode = "wireguard" | "none";

export interface ClusterConfig {
  /** Random at init; tells two clusters apart (a node never joins a second cluster by mistake). */
  readonly id: string;
  readonly name?: string;
  /** Milliseconds since the epoch, from the init node's clock. */
  readonly createdAt: number;
  readonly mesh: MeshMode;
  readonly meshCidr: string;
  /** The provider token itself lives in `secrets[tokenRef]`. */
  readonly provider?: { readonly name: string; readonly tokenRef: string };
}

/** What a node brings when it registers; the latest registration wins on a rejoin. */
export interface NodeRegistration {
  readonly name: string;
  /** IP literal other nodes and clients reach this node on. */
  readonly advertise: string;
  readonly apiPort: number;
  readonly raftPort: number;
  readonly wgPort: number;
  /** base64 x25519 public key. */
  readonly wgPublicKey: string;
  readonly resources: NodeResources;
  /** sha256 hex of the secret this node authenticates with on the internal API. */
  readonly memberSecretHash: string;
}

export interface NodeRecord extends NodeRegistration {
  readonly id: NodeId;
  /** Assigned from `cluster.meshCidr` at registration, without prefix: "10.99.0.2". */
  readonly meshAddress: string;
  readonly status: NodeStatus;
  readonly joinedAt: number;
  readonly lastStatusChangeAt: number;
}

export interface ClusterState {
  /** Undefined until the ClusterInit entry is applied. */
  readonly cluster?: ClusterConfig;
  /** sha256 hex of the join token's secret; never the secret. Empty before init. */
  readonly tokenHash: string;
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

/** Every record including departed nodes, ordered by id. */
export function allNodes(state: ClusterState): NodeRecord[] {
  return [...state.nodes.values()].sort((a, b) => a.id - b.id);
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
