/**
 * What `mill status` and `mill nodes` show: the JSON objects the API returns, and their text
 * rendering for the terminal (units and columns from lib/shared/format.ts). Owns: output shapes
 * and columns. Must not touch: I/O, clocks (ages are computed from a `now` passed in), and
 * secrets: every field shown is listed explicitly, so neither the token hash, member secret
 * hashes nor provider secrets leak.
 *
 * The text is rendered from the JSON, so the CLI renders exactly what any node's API answered.
 */

import { formatEndpoint } from "../mesh/plan.ts";
import type { Membership, NodeId } from "../raft/types.ts";
import { formatBytes, formatDuration, formatNumber, formatTable } from "../shared/format.ts";
import { type DiskSample, diskProblem, type NodeStatus } from "../shared/node-facts.ts";
import { formatProtocol } from "../shared/protocol.ts";
import { nodeUsage } from "../workloads/scheduler.ts";
import { clusterProtocol } from "./protocol-gate.ts";
import { type ClusterState, internalHost, memberNodes, type NodeRecord } from "./state.ts";

export type NodeRole = "voter" | "learner" | "none";

/** A node's status as views show it: its health, or `draining` for a ready node being drained. */
export type ShownStatus = NodeStatus | "draining";

export function shownStatus(node: Pick<NodeRecord, "status" | "draining">): ShownStatus {
  return node.status === "ready" && node.draining === true ? "draining" : node.status;
}

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
  /** The node's data-dir disk, where known. */
  readonly disk?: (id: NodeId) => DiskSample | undefined;
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
  readonly status: ShownStatus;
  readonly role: NodeRole;
  readonly address: string;
  readonly cpu: { readonly used: number; readonly total: number };
  readonly memory: { readonly used: number; readonly total: number };
  readonly allocs: number;
  readonly lastHeartbeatMs: number | null;
  readonly disk?: DiskSample;
  /** Why a node that is up is not healthy (its data-dir disk is full), absent when it is. */
  readonly problem?: string;
}

export interface StatusJson {
  readonly leader: string | null;
  readonly term: number;
  /** The protocol the cluster committed (protocol-gate.ts), "1.0" until it raised one. */
  readonly protocol: string;
  readonly nodes: readonly StatusNode[];
}

export interface NodesEntry extends Partial<MeshFields> {
  readonly name: string;
  readonly id: NodeId;
  readonly status: ShownStatus;
  readonly role: NodeRole;
  readonly advertise: string;
  readonly apiPort: number;
  readonly raftPort: number;
  readonly wgPort: number;
  readonly wgPublicKey: string;
  readonly joinedAt: number;
  /** The Mill version the node runs, as its record says; null for a record from before. */
  readonly version: string | null;
  /** As in StatusNode. */
  readonly problem?: string;
}

export interface NodesJson {
  readonly leader: string | null;
  readonly term: number;
  readonly nodes: readonly NodesEntry[];
}

export function statusView(input: ViewInput): StatusJson {
  const usage = nodeUsage(input.state.workloads, input.state.nodes);
  return {
    leader: leaderName(input),
    term: input.raft.term,
    protocol: formatProtocol(clusterProtocol(input.state)),
    nodes: memberNodes(input.state).map((node) => ({
      ...nodeIdentity(input, node),
      address: node.advertise,
      cpu: { used: usage.get(node.id)?.cpu.used ?? 0, total: node.resources.cores },
      memory: { used: usage.get(node.id)?.memory.used ?? 0, total: node.resources.memoryBytes },
      allocs: usage.get(node.id)?.allocs ?? 0,
      lastHeartbeatMs: input.heartbeatAge(node.id) ?? null,
      ...diskFields(input, node),
      ...meshFields(input, node),
    })),
  };
}

export function nodesView(input: ViewInput): NodesJson {
  return {
    leader: leaderName(input),
    term: input.raft.term,
    nodes: memberNodes(input.state).map((node) => ({
      ...nodeIdentity(input, node),
      advertise: node.advertise,
      apiPort: node.apiPort,
      raftPort: node.raftPort,
      wgPort: node.wgPort,
      wgPublicKey: node.wgPublicKey,
      joinedAt: node.joinedAt,
      version: node.version ?? null,
      ...problemOf(diskFields(input, node)),
      ...meshFields(input, node),
    })),
  };
}

/** The node's disk and, when it is up and its disk is full, why it is not healthy. */
function diskFields(input: ViewInput, node: NodeRecord): { disk?: DiskSample; problem?: string } {
  const disk = input.disk?.(node.id);
  if (!disk) return {};
  const problem = node.status === "ready" ? diskProblem(disk) : undefined;
  return problem ? { disk, problem } : { disk };
}

function problemOf(fields: { problem?: string }): { problem?: string } {
  return fields.problem === undefined ? {} : { problem: fields.problem };
}

function nodeIdentity(input: ViewInput, node: NodeRecord) {
  return {
    name: node.name,
    id: node.id,
    status: shownStatus(node),
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
  /** Fingerprint of its node certificate (lib/identity/node-key.ts); absent on old records. */
  readonly nodeKey?: string;
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
      ...(node.nodeKey === undefined ? {} : { nodeKey: node.nodeKey }),
    })),
  };
}

/** The seed's minimum widths for CPU and MEM, so a fresh cluster prints exactly as documented. */
const STATUS_MIN_WIDTHS = [0, 0, 5, 6, 0];

export function renderStatus(status: StatusJson): string {
  // Joins still waiting for their node are not members yet: named apart, counted nowhere else.
  const joining = status.nodes.filter((node) => node.status === "joining").length;
  const members = status.nodes.filter(
    (node) => node.status !== "left" && node.status !== "joining",
  );
  const down = members.filter((node) => node.status === "down").length;
  const draining = members.filter((node) => node.status === "draining").length;
  const troubled = members.filter((node) => node.problem !== undefined);
  const count = (n: number) => `${n} ${n === 1 ? "node" : "nodes"}`;
  const drainingNote = `${draining === 0 ? "" : `, ${draining} draining`}${joining === 0 ? "" : `, ${joining} joining`}`;
  const troubledNote = troubled.length === 0 ? "" : `, ${troubled.length} not healthy`;
  const summary =
    down === 0 && troubled.length === 0
      ? `CLUSTER: ${count(members.length)}, all healthy${drainingNote}`
      : down === 0
        ? `CLUSTER: ${count(members.length - troubled.length)} healthy${troubledNote}${drainingNote} (leader: ${status.leader ?? "none"})`
        : `CLUSTER: ${count(members.length - down - troubled.length)} healthy, ${down} down${troubledNote}${drainingNote} (leader: ${status.leader ?? "none"})`;
  const reasons = troubled.map((node) => `  ${node.name}: ${node.problem}`);
  const rows = [
    ["NAME", "STATUS", "CPU", "MEM", "ALLOCS"],
    ...status.nodes.map((node) => [
      node.name,
      shownHealth(node),
      `${formatNumber(node.cpu.used)}/${formatNumber(node.cpu.total)}`,
      `${formatBytes(node.memory.used)}/${formatBytes(node.memory.total)}`,
      String(node.allocs),
    ]),
  ];
  return [summary, ...reasons, "NODES", ...formatTable(rows, "  ", STATUS_MIN_WIDTHS)].join("\n");
}

export function renderNodes(nodes: NodesJson): string {
  const rows = [
    ["NAME", "ID", "STATUS", "ROLE", "VERSION", "ADDRESS", "MESH-ADDRESS", "ENDPOINT", "HANDSHAKE"],
    ...nodes.nodes.map((node) => [
      node.name,
      String(node.id),
      shownHealth(node),
      node.role,
      node.version ?? "-",
      formatEndpoint(node.advertise, node.apiPort),
      node.meshAddress ?? "-",
      node.endpoint ?? "-",
      formatHandshake(node),
    ]),
  ];
  return formatTable(rows, "", []).join("\n");
}

/** STATUS in the text tables: `unhealthy` for a node that is up with a problem. */
function shownHealth(node: { status: ShownStatus; problem?: string }): string {
  return node.problem === undefined ? node.status : "unhealthy";
}

function formatHandshake(node: NodesEntry): string {
  if (node.handshakeAgeMs === undefined) return "-";
  if (node.handshakeAgeMs === null) return "never";
  return `${formatDuration(node.handshakeAgeMs)} ago`;
}
