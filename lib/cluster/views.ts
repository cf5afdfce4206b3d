/**
 * What `mill status` and `mill nodes` show: the JSON objects the API returns, and their text
 * rendering for the terminal. Owns: output shapes, column layout, human units. Must not touch:
 * I/O, clocks (ages are computed from a `now` passed in), and secrets: every field shown is
 * listed explicitly, so neither the token hash, member secret hashes nor provider secrets leak.
 *
 * The text is rendered from the JSON, so the CLI renders exactly what any node's API answered.
 */

import { formatEndpoint } from "../mesh/plan.ts";
import type { Membership, NodeId } from "../raft/types.ts";
import type { NodeUsage } from "../workloads/scheduler.ts";
import {
  allNodes,
  type ClusterState,
  internalHost,
  memberNodes,
  type NodeRecord,
  type NodeStatus,
} from "./state.ts";

export type NodeRole = "voter" | "learner" | "none";

/** What the answering node observes of a WireGuard peer (from the UAPI), by public key. */
export interface PeerObservation {
  readonly endpoint?: string;
  /** Milliseconds since the epoch; undefined when no handshake happened yet. */
  readonly lastHandshakeAt?: number;
}

export interface ViewInput {
  readonly state: ClusterState;
  readonly raft: {
    readonly leader: NodeId;
    readonly term: number;
    readonly membership: Membership;
  };
  readonly now: number;
  /** Milliseconds since the leader last heard the node, where known. */
  readonly heartbeatAge: (id: NodeId) => number | undefined;
  /**
   * Reserved resources and running allocations per node (lib/workloads/scheduler.ts nodeUsage;
   * passed in because the workload room imports this one). A node missing here reserves nothing.
   */
  readonly usage?: ReadonlyMap<NodeId, NodeUsage>;
  /** The answering node's own id and its WireGuard peers; absent when the mesh is off. */
  readonly mesh?: {
    readonly self: NodeId;
    readonly peers: ReadonlyMap<string, PeerObservation>;
  };
}

export interface MeshFields {
  readonly meshAddress: string;
  readonly endpoint: string;
  /** null while no handshake happened; absent for the answering node itself. */
  readonly handshakeAgeMs?: number | null;
}

export interface StatusNode extends Partial<MeshFields> {
  readonly name: string;
  readonly id: NodeId;
  readonly status: NodeStatus;
  readonly role: NodeRole;
  readonly address: string;
  readonly cpu: { readonly used: number; readonly total: number };
  readonly memory: { readonly used: number; readonly total: number };
  readonly allocs: number;
  readonly lastHeartbeatMs: number | null;
}

export interface StatusJson {
  readonly leader: string | null;
  readonly term: number;
  readonly nodes: readonly StatusNode[];
}

export interface NodesEntry extends Partial<MeshFields> {
  readonly name: string;
  readonly id: NodeId;
  readonly status: NodeStatus;
  readonly role: NodeRole;
  readonly advertise: string;
  readonly apiPort: number;
  readonly raftPort: number;
  readonly wgPort: number;
  readonly wgPublicKey: string;
  readonly joinedAt: number;
}

export interface NodesJson {
  readonly leader: string | null;
  readonly term: number;
  readonly nodes: readonly NodesEntry[];
}

export function statusView(input: ViewInput): StatusJson {
  return {
    leader: leaderName(input),
    term: input.raft.term,
    nodes: allNodes(input.state).map((node) => ({
      ...nodeIdentity(input, node),
      address: node.advertise,
      cpu: { used: input.usage?.get(node.id)?.cpu.used ?? 0, total: node.resources.cores },
      memory: {
        used: input.usage?.get(node.id)?.memory.used ?? 0,
        total: node.resources.memoryBytes,
      },
      allocs: input.usage?.get(node.id)?.allocs ?? 0,
      lastHeartbeatMs: input.heartbeatAge(node.id) ?? null,
      ...meshFields(input, node),
    })),
  };
}

export function nodesView(input: ViewInput): NodesJson {
  return {
    leader: leaderName(input),
    term: input.raft.term,
    nodes: allNodes(input.state).map((node) => ({
      ...nodeIdentity(input, node),
      advertise: node.advertise,
      apiPort: node.apiPort,
      raftPort: node.raftPort,
      wgPort: node.wgPort,
      wgPublicKey: node.wgPublicKey,
      joinedAt: node.joinedAt,
      ...meshFields(input, node),
    })),
  };
}

function nodeIdentity(input: ViewInput, node: NodeRecord) {
  return {
    name: node.name,
    id: node.id,
    status: node.status,
    role: roleOf(input.raft.membership, node.id),
  };
}

function leaderName(input: ViewInput): string | null {
  return input.state.nodes.get(input.raft.leader)?.name ?? null;
}

export function roleOf(membership: Membership, id: NodeId): NodeRole {
  if (membership.voters.includes(id)) return "voter";
  if (membership.learners.includes(id)) return "learner";
  return "none";
}

function meshFields(input: ViewInput, node: NodeRecord): MeshFields | Record<string, never> {
  if (!input.mesh || input.state.cluster?.mesh !== "wireguard") return {};
  const observed = input.mesh.peers.get(node.wgPublicKey);
  const fields = {
    meshAddress: node.meshAddress,
    endpoint: observed?.endpoint ?? formatEndpoint(node.advertise, node.wgPort),
  };
  if (node.id === input.mesh.self) return fields;
  const handshake = observed?.lastHandshakeAt;
  return { ...fields, handshakeAgeMs: handshake === undefined ? null : input.now - handshake };
}

/** One member as a joiner or a lagging node needs it to set up WireGuard and Raft peers. */
export interface PeerEntry {
  readonly id: NodeId;
  readonly name: string;
  readonly status: NodeStatus;
  readonly advertise: string;
  readonly apiPort: number;
  readonly raftPort: number;
  /** "host:port" of its Raft transport: mesh address with WireGuard, advertise address without. */
  readonly raftAddress: string;
  readonly meshAddress: string;
  readonly wgPublicKey: string;
  readonly wgPort: number;
}

export interface PeerList {
  readonly peersVersion: number;
  readonly peers: readonly PeerEntry[];
}

/** Every member (departed nodes excluded), ordered by id. */
export function peerList(state: ClusterState): PeerList {
  return {
    peersVersion: state.peersVersion,
    peers: memberNodes(state).map((node) => ({
      id: node.id,
      name: node.name,
      status: node.status,
      advertise: node.advertise,
      apiPort: node.apiPort,
      raftPort: node.raftPort,
      raftAddress: formatEndpoint(internalHost(state, node), node.raftPort),
      meshAddress: node.meshAddress,
      wgPublicKey: node.wgPublicKey,
      wgPort: node.wgPort,
    })),
  };
}

/** The seed's minimum widths for CPU and MEM, so a fresh cluster prints exactly as documented. */
const STATUS_MIN_WIDTHS = [0, 0, 5, 6, 0];

export function renderStatus(status: StatusJson): string {
  const members = status.nodes.filter((node) => node.status !== "left");
  const ready = members.filter((node) => node.status === "ready").length;
  const down = members.length - ready;
  const count = (n: number) => `${n} ${n === 1 ? "node" : "nodes"}`;
  const summary =
    down === 0
      ? `CLUSTER: ${count(members.length)}, all healthy`
      : `CLUSTER: ${count(ready)} healthy, ${down} down (leader: ${status.leader ?? "none"})`;
  const rows = [
    ["NAME", "STATUS", "CPU", "MEM", "ALLOCS"],
    ...status.nodes.map((node) => [
      node.name,
      node.status,
      `${formatNumber(node.cpu.used)}/${formatNumber(node.cpu.total)}`,
      `${formatBytes(node.memory.used)}/${formatBytes(node.memory.total)}`,
      String(node.allocs),
    ]),
  ];
  return [summary, "NODES", ...formatTable(rows, "  ", STATUS_MIN_WIDTHS)].join("\n");
}

export function renderNodes(nodes: NodesJson): string {
  const rows = [
    ["NAME", "ID", "STATUS", "ROLE", "ADDRESS", "MESH-ADDRESS", "ENDPOINT", "HANDSHAKE"],
    ...nodes.nodes.map((node) => [
      node.name,
      String(node.id),
      node.status,
      node.role,
      formatEndpoint(node.advertise, node.apiPort),
      node.meshAddress ?? "-",
      node.endpoint ?? "-",
      formatHandshake(node),
    ]),
  ];
  return formatTable(rows, "", []).join("\n");
}

function formatHandshake(node: NodesEntry): string {
  if (node.handshakeAgeMs === undefined) return "-";
  if (node.handshakeAgeMs === null) return "never";
  return `${formatDuration(node.handshakeAgeMs)} ago`;
}

/** Columns as wide as their widest cell (or their minimum), two spaces apart, no trailing blanks. */
export function formatTable(
  rows: readonly (readonly string[])[],
  indent: string,
  minWidths: readonly number[],
): string[] {
  const widths = rows[0]!.map((_, column) =>
    Math.max(minWidths[column] ?? 0, ...rows.map((row) => row[column]!.length)),
  );
  return rows.map(
    (row) =>
      indent +
      row
        .map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!)))
        .join("  "),
  );
}

const BYTE_UNITS = ["K", "M", "G", "T", "P"];

/** Binary units with at most one decimal: 8G, 512M, 7.5G; bytes below 1K as "900B"; 0 as "0". */
export function formatBytes(bytes: number): string {
  if (bytes === 0) return "0";
  if (bytes < 1024) return `${bytes}B`;
  let unit = 0;
  let value = bytes / 1024;
  while (unit < BYTE_UNITS.length - 1 && Math.round(value * 10) / 10 >= 1024) {
    value /= 1024;
    unit++;
  }
  return `${formatNumber(Math.round(value * 10) / 10)}${BYTE_UNITS[unit]}`;
}

/** Up to two decimals, without trailing zeros: 4, 0.25, 1.5. */
export function formatNumber(value: number): string {
  return String(Math.round(value * 100) / 100);
}

export function formatDuration(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600)
    return `${Math.floor(seconds / 60)}m${seconds % 60 ? `${seconds % 60}s` : ""}`;
  return `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`;
}
