/**
 * The workload commands of the cluster's Raft log, each declared once as a schema: its type, its
 * parser and its rebuilder all derive from it (lib/shared/schema.ts), so a decoded command holds
 * exactly the fields below, checked.
 * Owns: the workload command vocabulary and its wire validation. Must not touch: how commands
 * change the state (state.ts), the CBOR codec (lib/cluster/commands.ts encodes every command).
 */

import type { NodeId } from "../raft/types.ts";
import { type Checked, checkTime, type Rule } from "../shared/fields.ts";
import { type Infer, leaf, list, object, optional, tagged } from "../shared/schema.ts";
import { canonicalSpec, checkWorkloadName } from "./spec.ts";

const MAX_LIST = 10_000;
/**
 * running: the process runs (after a crash, once it stayed up STABLE_REPORT_MS); failing: it
 * exited and waits for its restart, or restarted and has not stayed up yet; failed: it could
 * not be started at all (e.g. ENOENT, ENOSPC), retried with the same back-off.
 */
const REPORTED = ["running", "failing", "failed"] as const;
/** The longest start-up error a report carries (the node's log has the whole of it). */
export const MAX_REASON = 300;

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
  REPORTED.includes(value as ReportedStatus)
    ? undefined
    : `${field} must be running, failing or failed`;

export const checkExitCode: Rule = (value, field) =>
  Number.isSafeInteger(value) && (value as number) >= 0 && (value as number) <= 255
    ? undefined
    : `${field} must be an exit code (0-255)`;

export const checkSignal: Rule = (value, field) =>
  typeof value === "string" && /^SIG[A-Z0-9]{1,12}$/.test(value)
    ? undefined
    : `${field} must be a signal name such as SIGKILL`;

/** A C0 or C1 control character (or DEL): nothing a terminal should get from a workload. */
export function isControl(character: string): boolean {
  const code = character.codePointAt(0) ?? 0;
  return code < 0x20 || (code >= 0x7f && code <= 0x9f);
}

/** Printable text only: it ends up on operators' terminals. */
export const checkReason: Rule = (value, field) =>
  typeof value === "string" &&
  value.length > 0 &&
  value.length <= MAX_REASON &&
  ![...value].some(isControl)
    ? undefined
    : `${field} must be 1-${MAX_REASON} printable characters`;

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
      /** How the last run ended (failing, and running after a crash). */
      exitCode: optional(leaf<number>(checkExitCode)),
      signal: optional(leaf<string>(checkSignal)),
      /** Why it could not start (failed). */
      reason: optional(leaf<string>(checkReason)),
      /** When the node restarts it next, by the node's clock (failing and failed). */
      restartAt: optional(at),
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
