/**
 * What `mill ps` shows: one JSON row per allocation, and its text table.
 * Owns: the ps output shape and columns. Must not touch: I/O, clocks (ages come from a `now`
 * passed in). The text is rendered from the JSON rows, so the CLI shows what the API answered.
 */

import { formatBytes, formatDuration, formatTable } from "../shared/format.ts";
import type { AllocationStatus, Nodes, WorkloadState } from "./state.ts";

export interface PsRow {
  readonly id: number;
  readonly name: string;
  /** The node's name, or its id as text when the node record is gone. */
  readonly node: string;
  readonly status: AllocationStatus;
  readonly cpu: number;
  readonly memoryBytes: number;
  readonly createdAt: number;
  readonly restarts: number;
  readonly specHash: string;
}

/** Every allocation the state remembers, by workload name then id. */
export function psRows(state: WorkloadState, nodes: Nodes): PsRow[] {
  return [...state.allocations.values()]
    .sort((a, b) => (a.workload < b.workload ? -1 : a.workload > b.workload ? 1 : a.id - b.id))
    .map((allocation) => ({
      id: allocation.id,
      name: allocation.workload,
      node: nodes.get(allocation.node)?.name ?? String(allocation.node),
      status: allocation.status,
      cpu: allocation.cpu,
      memoryBytes: allocation.memoryBytes,
      createdAt: allocation.createdAt,
      restarts: allocation.restarts,
      specHash: allocation.specHash,
    }));
}

/** ID NAME NODE STATUS CPU MEM AGE RESTARTS; "No allocations" when there are none. */
export function formatPs(rows: readonly PsRow[], now: number): string {
  if (rows.length === 0) return "No allocations";
  const header = ["ID", "NAME", "NODE", "STATUS", "CPU", "MEM", "AGE", "RESTARTS"];
  const body = rows.map((row) => [
    String(row.id),
    row.name,
    row.node,
    row.status,
    String(row.cpu),
    formatBytes(row.memoryBytes),
    formatDuration(now - row.createdAt),
    String(row.restarts),
  ]);
  return formatTable([header, ...body], "", []).join("\n");
}
