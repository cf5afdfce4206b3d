/**
 * What must hold once a fault has healed, decided from what each node answered and from the
 * record of faults: agreement on one leader and one committed state, unique identities, no
 * acknowledged join lost, no false NodeDown, progress while a majority was connected.
 * Owns: those verdicts, as lists of one-line violations (empty means all held). Must not touch:
 * processes, clocks, I/O.
 */

import type { NodesJson } from "../../../lib/cluster/views.ts";

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

/** A NodeDown as the leader logged it, stamped when the log line was seen. */
export interface NodeDownSeen {
  readonly node: string;
  readonly at: number;
  readonly leader: string;
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
 * acknowledged join) is a ready voter, and nobody unknown registered.
 */
export function checkAgreement(views: readonly NodeView[], members: readonly string[]): string[] {
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
      if (!record) problems.push(`${view.node} has lost ${member}`);
      else if (record.role !== "voter" || record.status !== "ready")
        problems.push(`${view.node} sees ${member} as ${record.status} ${record.role}`);
    }
    for (const node of current) {
      if (!members.includes(node.name))
        problems.push(`${view.node} lists ${node.name}, which never joined`);
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
          (fault.peer === undefined || fault.peer === down.leader) &&
          fault.start <= down.at &&
          fault.end + graceMs >= down.at - timeoutMs,
      ),
  );
}
