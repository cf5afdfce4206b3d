/**
 * A node's resources (cores, memory): its registration's claim is provisional, and the figures the
 * node measures on its own host and sends in its heartbeats replace it. Both are bounded by the
 * same caps (validate.ts), so no report, true or forged, offers more than a real host could.
 * Owns: when a heartbeat's resources are committed. Must not touch: measuring (lib/node/host.ts),
 * the heartbeat table (health.ts), proposing (lib/node/watchdog.ts), the record's rules (fsm.ts).
 */

import type { NodeId } from "../raft/types.ts";
import type { NodeResources } from "../shared/node-facts.ts";
import type { NodeResourcesChange } from "./commands.ts";
import type { ClusterState, NodeRecord } from "./state.ts";
import { parseResources } from "./validate.ts";

export function sameResources(a: NodeResources, b: NodeResources): boolean {
  return a.cores === b.cores && a.memoryBytes === b.memoryBytes;
}

/**
 * Whether the resources a heartbeat of `node` carried should replace its record: only when they
 * are within the bounds and differ, so a node that stays the same commits nothing per heartbeat.
 */
export function shouldCommitResources(
  node: NodeRecord,
  reported: NodeResources | undefined,
): reported is NodeResources {
  if (reported === undefined || node.status === "left") return false;
  if (parseResources(reported) === undefined) return false;
  return !sameResources(node.resources, reported);
}

/** The NodeResources commands due: one per node whose latest report differs from its record. */
export function resourceChanges(
  state: ClusterState,
  reported: (id: NodeId) => NodeResources | undefined,
): NodeResourcesChange[] {
  const changes: NodeResourcesChange[] = [];
  for (const node of [...state.nodes.values()].sort((a, b) => a.id - b.id)) {
    const resources = reported(node.id);
    if (shouldCommitResources(node, resources)) {
      changes.push({ type: "NodeResources", id: node.id, resources });
    }
  }
  return changes;
}
