/**
 * What any room may know about a node without reading the cluster's records: its status and the
 * resources it offers. A leaf of lib/shared: imports nothing from other rooms.
 * Owns: those two shapes. Must not touch: how a status changes (lib/cluster), how resources are
 * measured on a host (lib/node) or reserved (lib/workloads).
 */

/**
 * `joining`: registered with the token, not yet a Raft voter, so nothing is placed on it; it
 * becomes `ready` once it is one, and a registration that never gets there expires.
 */
export const NODE_STATUSES = ["joining", "ready", "down", "left"] as const;

export type NodeStatus = (typeof NODE_STATUSES)[number];

/** What a node offers to workloads: whole cores and bytes of memory. */
export interface NodeResources {
  readonly cores: number;
  readonly memoryBytes: number;
}
