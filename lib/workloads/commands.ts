/**
 * The workload commands of the cluster's Raft log, each declared once as a schema: its type, its
 * parser and its rebuilder all derive from it (lib/shared/schema.ts), so a decoded command holds
 * exactly the fields below, checked.
 * Owns: the workload command vocabulary and its wire validation. Must not touch: how commands
 * change the state (state.ts), the CBOR codec (lib/cluster/commands.ts encodes every command).
 */

import type { NodeId } from "../raft/types.ts";
import { type Checked, checkTime, type Rule } from "../shared/fields.ts";
import { type Infer, leaf, list, object, tagged } from "../shared/schema.ts";
import { canonicalSpec, checkWorkloadName } from "./spec.ts";

const MAX_LIST = 10_000;
const REPORTED = ["running", "failed"] as const;

/** What a node reports about an allocation it runs. */
export type ReportedStatus = (typeof REPORTED)[number];

const checkPositive: Rule = (value, field) =>
  Number.isSafeInteger(value) && (value as number) > 0
    ? undefined
    : `${field} must be a positive integer`;

const checkCount: Rule = (value, field) =>
  Number.isSafeInteger(value) && (value as number) >= 0
    ? undefined
    : `${field} must be a whole number`;

const checkReported: Rule = (value, field) =>
  REPORTED.includes(value as ReportedStatus) ? undefined : `${field} must be running or failed`;

const at = leaf<number>(checkTime);
const allocationId = leaf<number>(checkPositive);
const node = leaf<NodeId>(checkPositive);
const workload = leaf<string>((value) => checkWorkloadName(value));
const allocationIds = list(allocationId, MAX_LIST);
const nodes = list(node, MAX_LIST);

export const workloadCommand = tagged(
  {
    /** Sets a workload's spec (creating it), then stops and places as the leader decided. */
    WorkloadRun: { spec: canonicalSpec, at, stop: allocationIds, place: nodes },
    /** One step toward a workload's spec: scale, replace lost replicas, roll one replica. */
    WorkloadStep: { workload, at, stop: allocationIds, place: nodes },
    /** Stops every allocation of a workload and forgets it. */
    WorkloadStop: { name: workload, at },
    /** A node reports it runs an allocation (or cannot start it), and how often it restarted. */
    AllocationStatus: {
      id: allocationId,
      node,
      status: leaf<ReportedStatus>(checkReported),
      restarts: leaf<number>(checkCount),
      at,
    },
    /** A node went down: its live allocations are lost, replacements go where the leader chose. */
    AllocationsLost: { node, at, replacements: list(object({ workload, node }), MAX_LIST) },
  },
  "command has no known workload type",
);

export type WorkloadCommand = Infer<typeof workloadCommand>;
export type WorkloadRun = Extract<WorkloadCommand, { type: "WorkloadRun" }>;
export type WorkloadStop = Extract<WorkloadCommand, { type: "WorkloadStop" }>;
export type AllocationStatusReport = Extract<WorkloadCommand, { type: "AllocationStatus" }>;
export type AllocationsLost = Extract<WorkloadCommand, { type: "AllocationsLost" }>;
export type Replacement = AllocationsLost["replacements"][number];

/** Validates a decoded command object and rebuilds it from its known fields. Never throws. */
export function parseWorkloadCommand(raw: unknown): Checked<WorkloadCommand> {
  return workloadCommand.parse(raw, "");
}
