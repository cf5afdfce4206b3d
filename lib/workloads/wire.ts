/**
 * The workload slice on the wire and on disk: commands arrive as decoded CBOR objects and are
 * rebuilt field by field; snapshots are plain data in a fixed order, so equal states encode to
 * equal bytes on every node.
 * Owns: validation of workload commands and the snapshot form. Must not touch: how commands
 * change the state (state.ts), the CBOR codec itself (the cluster FSM encodes the whole state).
 */

import { type Checked, checkFields, type Rule } from "../shared/fields.ts";
import {
  checkWorkloadName,
  parseCanonicalSpec,
  specHash,
  type WorkloadSpec,
  type WorkloadTemplate,
} from "./spec.ts";
import type {
  Allocation,
  Replacement,
  ReportedStatus,
  Workload,
  WorkloadCommand,
  WorkloadState,
} from "./state.ts";

const MAX_LIST = 10_000;

const checkTime: Rule = (value, field) =>
  Number.isSafeInteger(value) && (value as number) >= 0
    ? undefined
    : `${field} is not a time: expected milliseconds since the epoch`;

const checkPositive: Rule = (value, field) =>
  Number.isSafeInteger(value) && (value as number) > 0
    ? undefined
    : `${field} must be a positive integer`;

const checkCount: Rule = (value, field) =>
  Number.isSafeInteger(value) && (value as number) >= 0
    ? undefined
    : `${field} must be a whole number`;

const checkReported: Rule = (value, field) =>
  value === "running" || value === "failed" ? undefined : `${field} must be running or failed`;

const checkNameField: Rule = (value) => checkWorkloadName(value);

const listOf =
  (item: Rule): Rule =>
  (value, field) => {
    if (!Array.isArray(value) || value.length > MAX_LIST) {
      return `${field} must be a list of at most ${MAX_LIST} entries`;
    }
    for (const [index, entry] of value.entries()) {
      const problem = item(entry, `${field}[${index}]`);
      if (problem) return problem;
    }
    return undefined;
  };

const checkReplacement: Rule = (value, field) =>
  checkFields(value, { workload: checkNameField, node: checkPositive }, `${field}.`)?.error;

const RULES: Readonly<Record<WorkloadCommand["type"], Readonly<Record<string, Rule>>>> = {
  WorkloadRun: { at: checkTime, stop: listOf(checkPositive), place: listOf(checkPositive) },
  WorkloadStep: {
    workload: checkNameField,
    at: checkTime,
    stop: listOf(checkPositive),
    place: listOf(checkPositive),
  },
  WorkloadStop: { name: checkNameField, at: checkTime },
  AllocationStatus: {
    id: checkPositive,
    node: checkPositive,
    status: checkReported,
    restarts: checkCount,
    at: checkTime,
  },
  AllocationsLost: { node: checkPositive, at: checkTime, replacements: listOf(checkReplacement) },
};

export function isWorkloadCommandType(type: unknown): type is WorkloadCommand["type"] {
  return typeof type === "string" && Object.hasOwn(RULES, type);
}

/** Validates a decoded command object and rebuilds it from its known fields. Never throws. */
export function parseWorkloadCommand(raw: unknown): Checked<WorkloadCommand> {
  const type = (raw as { type?: unknown } | null)?.type;
  if (!isWorkloadCommandType(type)) {
    return { ok: false, problem: { field: "type", error: "command has no known workload type" } };
  }
  const problem = checkFields(raw, RULES[type]);
  if (problem) return { ok: false, problem };
  const input = raw as Record<string, unknown>;
  const numbers = (key: string) => [...(input[key] as number[])];
  switch (type) {
    case "WorkloadRun": {
      const spec = parseCanonicalSpec(input.spec);
      if (!spec.ok) return { ok: false, problem: spec.problem };
      return {
        ok: true,
        value: {
          type,
          spec: spec.value,
          at: input.at as number,
          stop: numbers("stop"),
          place: numbers("place"),
        },
      };
    }
    case "WorkloadStep":
      return {
        ok: true,
        value: {
          type,
          workload: input.workload as string,
          at: input.at as number,
          stop: numbers("stop"),
          place: numbers("place"),
        },
      };
    case "WorkloadStop":
      return { ok: true, value: { type, name: input.name as string, at: input.at as number } };
    case "AllocationStatus":
      return {
        ok: true,
        value: {
          type,
          id: input.id as number,
          node: input.node as number,
          status: input.status as ReportedStatus,
          restarts: input.restarts as number,
          at: input.at as number,
        },
      };
    case "AllocationsLost":
      return {
        ok: true,
        value: {
          type,
          node: input.node as number,
          at: input.at as number,
          replacements: (input.replacements as Replacement[]).map(({ workload, node }) => ({
            workload,
            node,
          })),
        },
      };
  }
}

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
      spec: canonicalSpec(workload.spec),
      createdAt: workload.createdAt,
      updatedAt: workload.updatedAt,
      previous: Object.keys(workload.previous)
        .sort(compareText)
        .map((hash) => [hash, canonicalTemplate(workload.previous[hash]!)] as const),
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
    const spec = parseCanonicalSpec(entry.spec);
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

function canonicalTemplate(template: WorkloadTemplate): WorkloadTemplate {
  return {
    cpu: template.cpu,
    memoryBytes: template.memoryBytes,
    env: [...template.env],
    command: [...template.command],
  };
}

function canonicalSpec(spec: WorkloadSpec): WorkloadSpec {
  return { name: spec.name, replicas: spec.replicas, ...canonicalTemplate(spec) };
}

/** Code-point order, the same on every runtime and locale. */
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
