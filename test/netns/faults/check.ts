/**
 * What must hold once a fault has healed, decided from what each node answered, from the
 * committed Raft log the nodes left on disk, and from the record of faults: agreement on one
 * leader and one committed state, unique identities, no acknowledged join or client write lost,
 * no false NodeDown, and a NodeDown wherever a node was stopped past the timeout.
 * Owns: those verdicts, as lists of one-line violations (empty means all held). Must not touch:
 * processes, clocks, I/O.
 */

import { decodeCommand } from "../../../lib/cluster/commands.ts";
import type { NodesJson } from "../../../lib/cluster/views.ts";
import { decodeMembershipEntry } from "../../../lib/raft/membership.ts";
import type { Entry } from "../../../lib/raft/types.ts";

/** What one node answered to `mill nodes --json` (a read barrier, then its committed state). */
export interface NodeView {
  readonly node: string;
  readonly nodes: NodesJson;
}

/**
 * A time during which a node could not be heard (ms on the run's clock): stopped, killed, not
 * started yet while joining (no `peer`: by nobody), or its link with `peer` cut (either way,
 * since a heartbeat needs both directions).
 */
export interface FaultWindow {
  readonly node: string;
  readonly peer?: string;
  readonly start: number;
  /** When the fault healed (for a kill: when the restarted agent served again). */
  readonly end: number;
  readonly what: string;
}

/** A committed NodeDown, on the run's clock; `leader` is the node that led its term, if known. */
export interface NodeDownSeen {
  readonly node: string;
  readonly at: number;
  readonly leader?: string;
}

/** The replicated part of every record: what every node must answer identically. */
function replicated(view: NodeView): string {
  return JSON.stringify(
    view.nodes.nodes.map((node) => [
      node.id,
      node.name,
      node.status,
      node.role,
      node.advertise,
      node.apiPort,
      node.raftPort,
      node.wgPort,
      node.wgPublicKey,
      node.joinedAt,
      node.meshAddress ?? null,
    ]),
  );
}

function duplicates(values: readonly unknown[]): unknown[] {
  const seen = new Set<unknown>();
  const repeated = new Set<unknown>();
  for (const value of values) (seen.has(value) ? repeated : seen).add(value);
  return [...repeated];
}

/**
 * After healing: every member answered, all name the same leader in the same term, the
 * replicated state is identical on every node, identities are unique, every member (initial or
 * acknowledged join) is a ready voter (`draining` for the members in `drained`), and nobody
 * else is listed: neither a stranger nor a node whose removal or leave was acknowledged.
 */
export function checkAgreement(
  views: readonly NodeView[],
  members: readonly string[],
  drained: ReadonlySet<string> = new Set(),
  departed: ReadonlySet<string> = new Set(),
): string[] {
  const problems: string[] = [];
  const answered = new Set(views.map((view) => view.node));
  for (const member of members)
    if (!answered.has(member)) problems.push(`${member} did not answer`);
  if (views.length === 0) return problems;

  const leaders = new Set(views.map((view) => `${view.nodes.leader} (term ${view.nodes.term})`));
  if (leaders.size !== 1 || views[0]!.nodes.leader === null) {
    problems.push(
      `no single leader: ${views.map((v) => `${v.node} says ${v.nodes.leader} (term ${v.nodes.term})`).join(", ")}`,
    );
  }

  const reference = replicated(views[0]!);
  for (const view of views.slice(1)) {
    if (replicated(view) !== reference)
      problems.push(`${view.node}'s committed state differs from ${views[0]!.node}'s`);
  }

  for (const view of views) {
    const current = view.nodes.nodes.filter((node) => node.status !== "left");
    for (const [field, values] of [
      ["id", current.map((node) => node.id)],
      ["name", current.map((node) => node.name)],
      ["mesh address", current.map((node) => node.meshAddress)],
    ] as const) {
      for (const value of duplicates(values))
        problems.push(`${view.node} sees two nodes with ${field} ${value}`);
    }
    for (const member of members) {
      const record = current.find((node) => node.name === member);
      const status = drained.has(member) ? "draining" : "ready";
      if (!record) problems.push(`${view.node} has lost ${member}`);
      else if (record.role !== "voter" || record.status !== status)
        problems.push(
          `${view.node} sees ${member} as ${record.status} ${record.role}, not ${status} voter`,
        );
    }
    for (const node of current) {
      if (members.includes(node.name)) continue;
      problems.push(
        departed.has(node.name)
          ? `${view.node} still lists ${node.name}, whose removal was acknowledged`
          : `${view.node} lists ${node.name}, which never joined`,
      );
    }
  }
  return problems;
}

/** What GET /v1/debug/state answered: the applied index and the digest of the state there. */
export interface AppliedState {
  readonly applied: number;
  readonly stateSha256: string;
}

/** Every node has applied the same index, and holds the same state there. */
export function checkDigests(states: ReadonlyMap<string, AppliedState>): string[] {
  const list = [...states];
  const show = (field: (state: AppliedState) => string | number) =>
    list.map(([node, state]) => `${node}=${field(state)}`).join(", ");
  if (new Set(list.map(([, state]) => state.applied)).size > 1)
    return [`applied indexes differ: ${show((state) => state.applied)}`];
  if (new Set(list.map(([, state]) => state.stateSha256)).size > 1)
    return [
      `state digests differ at index ${list[0]![1].applied}: ${show((state) => state.stateSha256.slice(0, 12))}`,
    ];
  return [];
}

/**
 * NodeDowns of a node that was healthy and reachable by the leader that marked it through the
 * whole timeout window before: no fault of its own, nor any cut of its link with that leader,
 * started before the NodeDown and ended (plus `graceMs` for reconnection) later than `timeoutMs`
 * before it.
 */
export function falseNodeDowns(
  downs: readonly NodeDownSeen[],
  faults: readonly FaultWindow[],
  timeoutMs: number,
  graceMs: number,
): NodeDownSeen[] {
  return downs.filter(
    (down) =>
      !faults.some(
        (fault) =>
          fault.node === down.node &&
          (fault.peer === undefined || down.leader === undefined || fault.peer === down.leader) &&
          fault.start <= down.at &&
          fault.end + graceMs >= down.at - timeoutMs,
      ),
  );
}

/** What one node's Raft storage held when it was stopped. */
export interface StoredLog {
  /** The commit index in its hard state. */
  readonly commit: number;
  readonly entries: readonly Entry[];
}

/**
 * The committed log, 1 to the highest commit index any node recorded, each entry taken from a
 * node whose own commit index covers it. Two such nodes holding different entries at one index
 * break Raft's safety; an index no such node holds (compacted into a snapshot everywhere) leaves
 * the history incomplete. Both are reported.
 */
export function committedLog(logs: ReadonlyMap<string, StoredLog>): {
  entries: Entry[];
  problems: string[];
} {
  const problems: string[] = [];
  const top = Math.max(0, ...[...logs.values()].map((log) => log.commit));
  const chosen = new Map<number, [node: string, entry: Entry]>();
  for (const [node, log] of logs) {
    for (const entry of log.entries) {
      if (entry.index > log.commit) continue;
      const earlier = chosen.get(entry.index);
      if (!earlier) chosen.set(entry.index, [node, entry]);
      else if (earlier[1].term !== entry.term || !sameBytes(earlier[1].data, entry.data))
        problems.push(
          `committed entry ${entry.index} differs: term ${earlier[1].term} on ${earlier[0]}, term ${entry.term} on ${node}`,
        );
    }
  }
  const missing = Array.from({ length: top }, (_, i) => i + 1).filter((i) => !chosen.has(i));
  if (missing.length > 0)
    problems.push(
      `the committed history is incomplete: ${missing.length} of ${top} entries are on no node (first ${missing[0]})`,
    );
  const entries = [...chosen.values()].map(([, entry]) => entry).sort((a, b) => a.index - b.index);
  return { entries, problems };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/**
 * A committed NodeDown, NodeUp or NodeRemove, with the leader's wall-clock time and the term it
 * was led in.
 */
export interface StatusChange {
  readonly type: "NodeDown" | "NodeUp" | "NodeRemove";
  readonly id: number;
  readonly at: number;
  readonly term: number;
}

export function statusChanges(entries: readonly Entry[]): StatusChange[] {
  return entries.flatMap((entry) => {
    // A removal commits its NodeRemove inside the membership entry that removes the voter.
    const data =
      entry.kind === "command"
        ? entry.data
        : entry.kind === "membership"
          ? decodeMembershipEntry(entry.data).command
          : undefined;
    if (data === undefined) return [];
    const decoded = decodeCommand(data);
    if (!decoded.ok) return [];
    const command = decoded.value;
    return command.type === "NodeDown" || command.type === "NodeUp" || command.type === "NodeRemove"
      ? [{ type: command.type, id: command.id, at: command.at, term: entry.term }]
      : [];
  });
}

/**
 * The Raft configuration the committed log ends with must be exactly the members' ids, all
 * voters: a removed node, or an expired join's learner, left in it is reported.
 */
export function checkConfiguration(
  entries: readonly Entry[],
  memberIds: readonly number[],
): string[] {
  const last = entries.findLast((entry) => entry.kind === "membership");
  if (!last) return ["the committed log holds no membership entry"];
  const { voters, learners } = decodeMembershipEntry(last.data).membership;
  const sorted = (ids: readonly number[]) => [...ids].sort((a, b) => a - b).join(", ");
  const problems: string[] = [];
  if (sorted(voters) !== sorted(memberIds))
    problems.push(
      `the committed Raft configuration (entry ${last.index}) has voters ${sorted(voters)}, the members are ${sorted(memberIds)}`,
    );
  if (learners.length > 0)
    problems.push(
      `the committed Raft configuration (entry ${last.index}) still has learners ${sorted(learners)}`,
    );
  return problems;
}

/** One row of `mill ps --json`: the workload, the node's name, the allocation's status. */
export interface PsEntry {
  readonly name: string;
  readonly node: string;
  readonly status: string;
}

/** Allocation statuses that hold a node (lib/workloads/state.ts isLive). */
const LIVE = new Set(["pending", "running", "failing", "failed"]);

/**
 * Nodes that must hold no live allocation: a member whose drain was acknowledged, and a node
 * whose removal was acknowledged (its replicas were moved off or rescheduled).
 */
export function misplacedAllocations(
  rows: readonly PsEntry[],
  empty: ReadonlyMap<string, string>,
): string[] {
  return rows.flatMap((row) => {
    const why = empty.get(row.node);
    return why !== undefined && LIVE.has(row.status)
      ? [`${row.node} holds a ${row.status} allocation of ${row.name}, though ${why}`]
      : [];
  });
}

/** A node stopped long enough that the leader owed a NodeDown between `from` and `until`. */
export interface OwedNodeDown {
  readonly node: string;
  readonly from: number;
  readonly until: number;
  readonly what: string;
}

/** The owed NodeDowns that no committed NodeDown of that node answers within their window. */
export function missingNodeDowns(
  owed: readonly OwedNodeDown[],
  downs: readonly NodeDownSeen[],
): OwedNodeDown[] {
  return owed.filter(
    (o) => !downs.some((down) => down.node === o.node && down.at >= o.from && down.at <= o.until),
  );
}

/** A client write and whether the client saw it acknowledged (the command exited 0). */
export interface ClientWriteRecord {
  readonly kind: "run" | "stop" | "rotate";
  /** The workload (run, stop), or for an acknowledged rotation the token it printed. */
  readonly subject: string;
  readonly acked: boolean;
}

/**
 * Workload writes the committed state contradicts: the last write to a name was acknowledged,
 * yet a run's workload is missing or a stopped one is still there. A name whose last write was
 * not acknowledged may go either way (the command may have failed after its commit).
 */
export function lostWorkloadWrites(
  writes: readonly ClientWriteRecord[],
  present: ReadonlySet<string>,
): string[] {
  const last = new Map<string, ClientWriteRecord>();
  for (const write of writes) if (write.kind !== "rotate") last.set(write.subject, write);
  return [...last.values()].flatMap((write) => {
    if (!write.acked) return [];
    if (write.kind === "run" && !present.has(write.subject))
      return [`the acknowledged mill run ${write.subject} is lost: no such workload`];
    if (write.kind === "stop" && present.has(write.subject))
      return [`the acknowledged mill stop ${write.subject} is lost: the workload is still there`];
    return [];
  });
}

/**
 * Whether the last acknowledged rotation holds. `tokens` are every token seen, in order: the
 * initial one, each rotation's as printed, and any that came into force unacknowledged. The
 * token in force must be that rotation's, or, when another rotation was attempted after it
 * without an acknowledgement, at least not one from before it.
 */
export function lostRotation(
  writes: readonly ClientWriteRecord[],
  tokens: readonly string[],
  inForce: string,
): string[] {
  const rotations = writes.filter((write) => write.kind === "rotate");
  const last = rotations.findLastIndex((write) => write.acked);
  if (last === -1) return [];
  const acked = tokens.indexOf(rotations[last]!.subject);
  const seen = tokens.indexOf(inForce);
  const lost = last < rotations.length - 1 ? seen !== -1 && seen < acked : seen !== acked;
  if (!lost) return [];
  const which = seen === -1 ? "a token no command printed" : `token ${seen}`;
  return [`the acknowledged rotation to token ${acked} is lost: ${which} is in force`];
}
