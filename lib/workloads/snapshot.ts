/**
 * The workload slice on disk: snapshots are plain data in a fixed order, so equal states encode
 * to equal bytes on every node (commands are declared in commands.ts).
 * Owns: the snapshot form. Must not touch: how commands change the state (state.ts), the CBOR
 * codec itself (the cluster FSM encodes the whole state).
 */

import type { NodeId } from "../raft/types.ts";
import { checkCount, checkTime, type Rule } from "../shared/fields.ts";
import { leaf, list, object, optional, type Schema } from "../shared/schema.ts";
import { checkExitCode, checkReason, checkSignal } from "./commands.ts";
import {
  canonicalSpec,
  checkWorkloadName,
  specHash,
  templateOf,
  type WorkloadSpec,
  type WorkloadTemplate,
} from "./spec.ts";
import type { Allocation, AllocationStatus, Workload, WorkloadState } from "./state.ts";

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
      ...(allocation.exitCode === undefined ? {} : { exitCode: allocation.exitCode }),
      ...(allocation.signal === undefined ? {} : { signal: allocation.signal }),
      ...(allocation.reason === undefined ? {} : { reason: allocation.reason }),
      ...(allocation.restartAt === undefined ? {} : { restartAt: allocation.restartAt }),
    }));
  return { workloads, allocations, nextAllocationId: state.nextAllocationId };
}

const isPositive: Rule = (value, field) =>
  Number.isSafeInteger(value) && (value as number) > 0
    ? undefined
    : `${field} is not a positive integer`;
const isCpu: Rule = (value, field) =>
  typeof value === "number" && Number.isFinite(value) && value > 0
    ? undefined
    : `${field} is not a cpu share`;
const isSpecHash: Rule = (value, field) =>
  typeof value === "string" && /^[0-9a-f]{16}$/.test(value)
    ? undefined
    : `${field} is not a spec hash`;
const isAllocationStatus: Rule = (value, field) =>
  ALLOCATION_STATUSES.includes(value as AllocationStatus) ? undefined : `${field} is not a status`;
const isWorkloadName: Rule = (value, field) =>
  checkWorkloadName(value) === undefined ? undefined : `${field} is not a workload name`;

const ALLOCATION_STATUSES: readonly AllocationStatus[] = [
  "pending",
  "running",
  "failing",
  "lost",
  "stopped",
  "failed",
];
const MAX_RECORDS = 1_000_000;

/**
 * An allocation as a snapshot carries it. Every field is checked: ids name files on the node
 * (allocation-dirs.ts), so a snapshot must not be able to smuggle a path into one.
 */
const allocationRecord = object({
  id: leaf<number>(isPositive),
  workload: leaf<string>(isWorkloadName),
  node: leaf<NodeId>(isPositive),
  cpu: leaf<number>(isCpu),
  memoryBytes: leaf<number>(isPositive),
  status: leaf<AllocationStatus>(isAllocationStatus),
  restarts: leaf<number>(checkCount),
  createdAt: leaf<number>(checkTime),
  specHash: leaf<string>(isSpecHash),
  exitCode: optional(leaf<number>(checkExitCode)),
  signal: optional(leaf<string>(checkSignal)),
  reason: optional(leaf<string>(checkReason)),
  restartAt: optional(leaf<number>(checkTime)),
});

/** A template an older spec left, checked as the canonical spec it came from. */
const previousTemplate: Schema<readonly [string, WorkloadTemplate]> = {
  parse(value, field) {
    if (!Array.isArray(value) || value.length !== 2) {
      return { ok: false, problem: { field, error: `${field} is not a [hash, template] pair` } };
    }
    const hash = leaf<string>(isSpecHash).parse(value[0], `${field}[0]`);
    if (!hash.ok) return hash;
    const spec = canonicalSpec.parse({ ...value[1], name: "previous", replicas: 1 }, `${field}[1]`);
    if (!spec.ok) return spec;
    return { ok: true, value: [hash.value, templateOf(spec.value)] as const };
  },
  pick: ([hash, template]) => [hash, templateOf(template)] as const,
};

const workloadRecord = object({
  spec: canonicalSpec,
  createdAt: leaf<number>(checkTime),
  updatedAt: leaf<number>(checkTime),
  previous: list(previousTemplate, MAX_RECORDS),
});

const workloadSnapshotSchema = object({
  workloads: list(workloadRecord, MAX_RECORDS),
  allocations: list(allocationRecord, MAX_RECORDS),
  nextAllocationId: leaf<number>(isPositive),
});

/**
 * Rebuilds the state from workloadSnapshot()'s data, every field checked; throws a one-line
 * error naming the first field that is wrong.
 */
export function restoreWorkloadSnapshot(data: unknown): WorkloadState {
  const checked = workloadSnapshotSchema.parse(data, "workloads");
  if (!checked.ok) throw new Error(`workload snapshot: ${checked.problem.error}`);
  const snapshot = checked.value;
  const workloads = new Map<string, Workload>();
  for (const entry of snapshot.workloads) {
    workloads.set(entry.spec.name, {
      spec: entry.spec,
      specHash: specHash(entry.spec),
      createdAt: entry.createdAt,
      updatedAt: entry.updatedAt,
      previous: Object.fromEntries(entry.previous),
    });
  }
  const allocations = new Map<number, Allocation>();
  for (const allocation of snapshot.allocations) {
    if (allocation.id >= snapshot.nextAllocationId) {
      throw new Error(
        `workload snapshot: allocation ${allocation.id} is not below nextAllocationId ${snapshot.nextAllocationId}`,
      );
    }
    allocations.set(allocation.id, allocation);
  }
  return { workloads, allocations, nextAllocationId: snapshot.nextAllocationId };
}

/** Code-point order, the same on every runtime and locale. */
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
