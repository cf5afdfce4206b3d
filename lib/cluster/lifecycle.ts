/**
 * Whether a node may leave the cluster now, decided from the replicated state and the Raft
 * configuration: the checks behind `mill remove` and `mill leave`, with the fix in each refusal.
 * Owns: those decisions. Must not touch: I/O, Raft itself (the API proposes the removal), how
 * the remaining replicas are rescheduled (lib/workloads/scheduler.ts).
 */

import { majority } from "../raft/quorum.ts";
import type { Membership, NodeId } from "../raft/types.ts";
import { isLive } from "../workloads/state.ts";
import type { ClusterState, NodeRecord } from "./state.ts";

export type RemovalCheck =
  | { readonly ok: true; readonly liveAllocations: number }
  | { readonly ok: false; readonly error: string; readonly overridable: boolean };

/**
 * Refuses removing `node` when it still holds live allocations (drain first) or when the voters
 * left would not have a quorum of nodes that are up; `--force` overrides both. Never allowed:
 * removing the last voter (that is `mill leave --force` on it, which ends the cluster).
 */
export function checkRemoval(
  state: ClusterState,
  membership: Membership,
  node: NodeRecord,
  force: boolean,
): RemovalCheck {
  const remaining = membership.voters.filter((id) => id !== node.id);
  if (remaining.length === 0) {
    return {
      ok: false,
      overridable: false,
      error: `${node.name} is the cluster's last voter: removing it would end the cluster; on it, run mill leave --force instead`,
    };
  }
  const liveAllocations = [...state.workloads.allocations.values()].filter(
    (allocation) => allocation.node === node.id && isLive(allocation),
  ).length;
  if (!force && liveAllocations > 0) {
    return {
      ok: false,
      overridable: true,
      error: `${node.name} still holds ${liveAllocations} live allocation(s): run mill drain ${node.name} first, or mill remove ${node.name} --force to reschedule them as if it were down`,
    };
  }
  const up = remaining.filter((id) => isUp(state, id));
  const needed = majority(remaining.length);
  if (!force && up.length < needed) {
    const down = remaining.filter((id) => !isUp(state, id)).map((id) => nameOf(state, id));
    return {
      ok: false,
      overridable: true,
      error: `removing ${node.name} would leave ${remaining.length} voters of which ${up.length} are up, short of a quorum of ${needed}: bring ${down.join(", ")} back first, or remove a down node instead (--force overrides)`,
    };
  }
  return { ok: true, liveAllocations };
}

function isUp(state: ClusterState, id: NodeId): boolean {
  return state.nodes.get(id)?.status === "ready";
}

function nameOf(state: ClusterState, id: NodeId): string {
  return state.nodes.get(id)?.name ?? `node ${id}`;
}
