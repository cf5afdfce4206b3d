/**
 * The workload slice on disk: snapshots are plain data in a fixed order, so equal states encode
 * to equal bytes on every node (commands are declared in commands.ts).
 * Owns: the snapshot form. Must not touch: how commands change the state (state.ts), the CBOR
 * codec itself (the cluster FSM encodes the whole state).
 */

import {
  canonicalSpec,
  specHash,
  templateOf,
  type WorkloadSpec,
  type WorkloadTemplate,
} from "./spec.ts";
import type { Allocation, Workload, WorkloadState } from "./state.ts";

export interface WorkloadSnapshot {
  readonly workloads: readonly {
    readonly spec: WorkloadSpec;
    readonly createdAt: number;
    readonly updatedAt: number;
    readonly previous: readonly (readonly [string, WorkloadTemplate])[];
  }[];
  readonly allocations: readonly Allocation[];
  readonly nextAllocationId: number;
}

export function workloadSnapshot(state: WorkloadState): WorkloadSnapshot {
  const workloads = [...state.workloads.values()]
    .sort((a, b) => compareText(a.spec.name, b.spec.name))
    .map((workload) => ({
      spec: canonicalSpec.pick(workload.spec),
      createdAt: workload.createdAt,
      updatedAt: workload.updatedAt,
      previous: Object.keys(workload.previous)
        .sort(compareText)
        .map((hash) => [hash, templateOf(workload.previous[hash]!)] as const),
    }));
  const allocations = [...state.allocations.values()]
    .sort((a, b) => a.id - b.id)
    .map((allocation) => ({
      id: allocation.id,
      workload: allocation.workload,
      node: allocation.node,
      cpu: allocation.cpu,
      memoryBytes: allocation.memoryBytes,
      status: allocation.status,
      restarts: allocation.restarts,
      createdAt: allocation.createdAt,
      specHash: allocation.specHash,
    }));
  return { workloads, allocations, nextAllocationId: state.nextAllocationId };
}

/** Rebuilds the state from workloadSnapshot()'s data; throws a one-line error on anything else. */
export function restoreWorkloadSnapshot(data: unknown): WorkloadState {
  const snapshot = data as WorkloadSnapshot;
  const wellFormed =
    typeof snapshot === "object" &&
    snapshot !== null &&
    Array.isArray(snapshot.workloads) &&
    Array.isArray(snapshot.allocations) &&
    Number.isSafeInteger(snapshot.nextAllocationId);
  if (!wellFormed) {
    throw new Error("workload snapshot is malformed: restore from another snapshot or the log");
  }
  const workloads = new Map<string, Workload>();
  for (const entry of snapshot.workloads as WorkloadSnapshot["workloads"]) {
    const spec = canonicalSpec.parse(entry.spec, "spec");
    if (!spec.ok) throw new Error(`workload snapshot: ${spec.problem.error}`);
    workloads.set(spec.value.name, {
      spec: spec.value,
      specHash: specHash(spec.value),
      createdAt: entry.createdAt,
      updatedAt: entry.updatedAt,
      previous: Object.fromEntries(entry.previous.map(([hash, template]) => [hash, template])),
    });
  }
  const allocations = new Map<number, Allocation>();
  for (const allocation of snapshot.allocations as readonly Allocation[])
    allocations.set(allocation.id, { ...allocation });
  return { workloads, allocations, nextAllocationId: snapshot.nextAllocationId };
}

/** Code-point order, the same on every runtime and locale. */
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
