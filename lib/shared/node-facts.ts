/**
 * What any room may know about a node without reading the cluster's records: its status and the
 * resources it offers. A leaf of lib/shared: imports nothing from other rooms.
 * Owns: those two shapes. Must not touch: how a status changes (lib/cluster), how resources are
 * measured on a host (lib/node) or reserved (lib/workloads).
 */

export const NODE_STATUSES = ["ready", "down", "left"] as const;

export type NodeStatus = (typeof NODE_STATUSES)[number];

/** What a node offers to workloads: whole cores and bytes of memory. */
export interface NodeResources {
  readonly cores: number;
  readonly memoryBytes: number;
}
