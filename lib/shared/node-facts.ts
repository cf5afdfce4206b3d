/**
 * What any room may know about a node without reading the cluster's records: its status and the
 * resources it offers. A leaf of lib/shared: imports nothing from other rooms.
 * Owns: those shapes, and when a data-dir disk counts as full. Must not touch: how a status changes (lib/cluster), how resources are
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

/** A node's data-dir disk, as the node itself measured it. */
export interface DiskSample {
  readonly freeBytes: number;
  readonly totalBytes: number;
}

/** A disk counts as (nearly) full below 5% free, or below 1 GiB free on a disk over 20 GiB. */
const FULL_FRACTION = 0.05;
const FULL_BYTES = 1024 ** 3;

/** Why a node is not healthy because of its data-dir disk, or undefined. */
export function diskProblem(sample: DiskSample | undefined): string | undefined {
  if (!sample || sample.totalBytes === 0) return undefined;
  const limit = Math.min(sample.totalBytes * FULL_FRACTION, FULL_BYTES);
  if (sample.freeBytes >= limit) return undefined;
  const used = Math.round(100 - (100 * sample.freeBytes) / sample.totalBytes);
  return `data-dir disk ${sample.freeBytes === 0 ? "full" : "nearly full"} (${used}% used, ${mib(sample.freeBytes)} free): free space or move the data dir`;
}

function mib(bytes: number): string {
  return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
}

/** A sample a peer sent, checked; undefined when it is missing or malformed. */
export function parseDiskSample(raw: unknown): DiskSample | undefined {
  const sample = raw as Partial<DiskSample> | null | undefined;
  const count = (value: unknown) => Number.isSafeInteger(value) && (value as number) >= 0;
  if (!count(sample?.freeBytes) || !count(sample?.totalBytes)) return undefined;
  if (sample!.freeBytes! > sample!.totalBytes!) return undefined;
  return { freeBytes: sample!.freeBytes!, totalBytes: sample!.totalBytes! };
}
