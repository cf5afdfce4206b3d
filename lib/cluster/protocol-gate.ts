/**
 * The cluster protocol: the protocol minor the whole cluster speaks, committed in the log
 * (ClusterProtocol), and the gate that holds every command newer than the baseline back until
 * the cluster speaks the minor that introduced it. etcd does the same with its cluster version.
 * Owns: which minor each command needs (COMMAND_SINCE), when the leader raises the cluster
 * protocol, and the refusal lines that name the nodes holding it back. Must not touch: I/O, how a
 * node learns what its peers speak (heartbeats, lib/api/internal.ts), proposing (lib/node).
 *
 * Why a mixed cluster keeps one state: a node refuses a command type it does not know (it
 * changes nothing) while newer nodes apply it, so a newer command committed while an older node
 * is a member would leave that node's state, and its digest, apart. The leader proposes a gated
 * command only once the committed cluster protocol has it, and raises the cluster protocol only
 * when every member has shown the new minor. ClusterProtocol is itself new (1.2): a 1.1 node
 * would refuse it, so it obeys the same rule: the first raise needs every member on 1.2 or
 * later, and until then the state holds no cluster protocol at all, which reads as the baseline.
 * A member counts only while it is ready and the leader has heard its version in this
 * leadership: a node that is down or still joining has shown nothing and holds the raise back
 * (so does one gone for good, until `mill remove`).
 *
 * What a member "has shown" is the protocol header of its latest heartbeat to this leader, a
 * member-authenticated call, and the hello of the leader's current Raft connection to it (bound
 * to its key), the connection the raise itself travels on: a restart ends that connection, so the
 * member counts again only once its new build said hello. A node restarted onto an older build in
 * the moment between that and the raise's proposal can still receive the raise it cannot apply;
 * from then on its peers refuse it (protocolRefusal), as etcd refuses a member older than its
 * cluster version.
 */

import type { NodeId } from "../raft/types.ts";
import {
  BASELINE_PROTOCOL,
  formatProtocol,
  PROTOCOL_VERSION,
  type ProtocolVersion,
} from "../shared/protocol.ts";
import type { ClusterProtocolRaise, Command } from "./commands.ts";
import { type ClusterState, memberNodes } from "./state.ts";

/**
 * The minor (of major 1) that introduced each command; 0 for those of the baseline. Every
 * command type must be listed, so a new one has to say which minor it needs. (1.1 added only
 * `logLost` to Raft's rejected appends, which a 1.0 leader ignores: no command needs 1.1.)
 */
export const COMMAND_SINCE: Readonly<Record<Command["type"], number>> = {
  ClusterInit: 0,
  NodeRegister: 0,
  NodeDown: 0,
  NodeUp: 0,
  NodeRemove: 0,
  NodeDrain: 0,
  NodeUndrain: 0,
  NodeVersion: 0,
  /** Builds before 32e677d do not know it. */
  NodeResources: 2,
  /** 1.0 builds know TokenRotate without `fingerprint`: they would keep the old TLS identity. */
  TokenRotate: 2,
  ClusterProtocol: 2,
  WorkloadRun: 0,
  WorkloadStep: 0,
  WorkloadStop: 0,
  AllocationStatus: 0,
  AllocationsLost: 0,
};

/** The protocol `state` committed; a state without one (all logs before 1.2) is the baseline. */
export function clusterProtocol(state: ClusterState): ProtocolVersion {
  return state.clusterProtocol ?? BASELINE_PROTOCOL;
}

/** The protocol `type` needs the whole cluster to speak. */
export function protocolFor(type: Command["type"]): ProtocolVersion {
  return { major: BASELINE_PROTOCOL.major, minor: COMMAND_SINCE[type] };
}

/** Whether the leader may propose a command of `type` now. */
export function allowed(state: ClusterState, type: Command["type"]): boolean {
  const cluster = clusterProtocol(state);
  const needed = protocolFor(type);
  return cluster.major === needed.major && cluster.minor >= needed.minor;
}

/** The protocol each member showed the leader, undefined where it has not (see the header). */
export type ShownProtocol = (id: NodeId) => ProtocolVersion | undefined;

/** What the leader heard: members' heartbeats, and its own protocol for itself. */
export function shownBy(
  self: NodeId,
  heard: (id: NodeId) => ProtocolVersion | undefined,
  own: ProtocolVersion = PROTOCOL_VERSION,
): ShownProtocol {
  return (id) => (id === self ? own : heard(id));
}

/**
 * What two authenticated facts about one member agree it speaks: the lower of the two, and
 * nothing while either is missing (a member's heartbeat header and its Raft connection's hello).
 */
export function bothShow(
  a: ProtocolVersion | undefined,
  b: ProtocolVersion | undefined,
): ProtocolVersion | undefined {
  if (!a || !b || a.major !== b.major) return undefined;
  return a.minor <= b.minor ? a : b;
}

/** A member that does not count as speaking `needed`, with what it showed (if anything). */
export interface BehindMember {
  readonly name: string;
  readonly status: string;
  readonly shown?: ProtocolVersion;
}

/** The members (not left) that have not shown `needed` while ready, by id. */
export function membersBehind(
  state: ClusterState,
  shown: ShownProtocol,
  needed: ProtocolVersion,
): BehindMember[] {
  const behind: BehindMember[] = [];
  for (const node of memberNodes(state)) {
    const version = node.status === "ready" ? shown(node.id) : undefined;
    if (version?.major === needed.major && version.minor >= needed.minor) continue;
    behind.push({ name: node.name, status: node.status, ...(version ? { shown: version } : {}) });
  }
  return behind;
}

/**
 * The ClusterProtocol the leader should commit now: the lowest minor every member showed, when
 * that is above the committed one and has ClusterProtocol itself; otherwise undefined.
 */
export function protocolRaise(
  state: ClusterState,
  shown: ShownProtocol,
): ClusterProtocolRaise | undefined {
  const current = clusterProtocol(state);
  const members = memberNodes(state);
  let lowest = Number.POSITIVE_INFINITY;
  for (const node of members) {
    const version = node.status === "ready" ? shown(node.id) : undefined;
    if (version?.major !== current.major) return undefined;
    lowest = Math.min(lowest, version.minor);
  }
  if (members.length === 0 || lowest <= current.minor) return undefined;
  if (lowest < COMMAND_SINCE.ClusterProtocol) return undefined;
  return { type: "ClusterProtocol", major: current.major, minor: lowest };
}

/**
 * Why `what` cannot be done yet because it needs `needed` and the cluster committed less: one
 * line naming the nodes that hold it back and what to do. Undefined when it can be done.
 */
export function gateRefusal(
  what: string,
  type: Command["type"],
  state: ClusterState,
  shown: ShownProtocol,
): string | undefined {
  if (allowed(state, type)) return undefined;
  const needed = protocolFor(type);
  const wanted = formatProtocol(needed);
  const behind = membersBehind(state, shown, needed);
  if (behind.length === 0) {
    return `${what} needs protocol ${wanted}, which every node speaks but the cluster has not committed yet: try again in a few seconds`;
  }
  const named = behind.map((member) =>
    member.shown
      ? `${member.name} speaks ${formatProtocol(member.shown)}`
      : `${member.name} (${member.status}) has not shown its protocol to the leader`,
  );
  return `${what} needs protocol ${wanted} on every node, and ${named.join(", ")}: run a mill of protocol ${wanted} or later there (or mill remove the node), then try again`;
}

/**
 * Why a node speaking `own` must not take part in a cluster that committed `cluster` (it is below
 * it, and every member spoke it when it was raised); undefined when it may.
 */
export function belowProtocol(
  cluster: ProtocolVersion,
  own: ProtocolVersion = PROTOCOL_VERSION,
): string | undefined {
  if (own.major !== cluster.major || own.minor >= cluster.minor) return undefined;
  return `this node speaks protocol ${formatProtocol(own)}, below the cluster's protocol ${formatProtocol(cluster)}: run a mill of protocol ${formatProtocol(cluster)} or later on this data dir`;
}

/** belowProtocol for the protocol `state` committed. */
export function belowCluster(
  state: ClusterState,
  own: ProtocolVersion = PROTOCOL_VERSION,
): string | undefined {
  return belowProtocol(clusterProtocol(state), own);
}
