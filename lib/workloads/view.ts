/**
 * What `mill ps` shows: one JSON row per allocation, and its text table.
 * Owns: the ps output shape and columns. Must not touch: I/O, clocks (ages come from a `now`
 * passed in). The text is rendered from the JSON rows, so the CLI shows what the API answered.
 */

import { formatBytes, formatDuration, formatTable } from "../shared/format.ts";
import type { AllocationDetail, AllocationStatus, Nodes, WorkloadState } from "./state.ts";

export interface PsRow extends AllocationDetail {
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
      ...(allocation.exitCode === undefined ? {} : { exitCode: allocation.exitCode }),
      ...(allocation.signal === undefined ? {} : { signal: allocation.signal }),
      ...(allocation.reason === undefined ? {} : { reason: allocation.reason }),
      ...(allocation.restartAt === undefined ? {} : { restartAt: allocation.restartAt }),
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
    statusText(row, now),
    String(row.cpu),
    formatBytes(row.memoryBytes),
    formatDuration(now - row.createdAt),
    String(row.restarts),
  ]);
  return formatTable([header, ...body], "", []).join("\n");
}

/** How a row's last exit reads: "exit 1", "SIGKILL", or "exited" when the node could not tell. */
export function exitText(row: AllocationDetail): string {
  if (row.signal) return row.signal;
  return row.exitCode === undefined ? "exited" : `exit ${row.exitCode}`;
}

/** The longest start-up error the text table shows (`ps --json` has all of it). */
const SHOWN_REASON = 60;

/**
 * STATUS as ps shows it: `failing (exit 1, restart in 4s)` for a crash loop, `failed (reason,
 * retry in 5s)` for a process that cannot start, the bare status otherwise.
 */
export function statusText(row: PsRow, now: number): string {
  if (row.status !== "failing" && row.status !== "failed") return row.status;
  const parts: string[] = [];
  if (row.status === "failing") parts.push(exitText(row));
  if (row.status === "failed" && row.reason) {
    parts.push(
      row.reason.length <= SHOWN_REASON ? row.reason : `${row.reason.slice(0, SHOWN_REASON - 1)}…`,
    );
  }
  const again = row.status === "failing" ? "restart" : "retry";
  if (row.restartAt !== undefined && row.restartAt > now) {
    parts.push(`${again} in ${formatDuration(row.restartAt - now)}`);
  } else {
    parts.push(row.status === "failing" ? "restarting" : "retrying");
  }
  return `${row.status} (${parts.join(", ")})`;
}

/**
 * Why `mill run` must fail now: each replica of the spec `hash` that exited (failing) or cannot
 * start (failed), one clause each; undefined when none does.
 */
export function startupTrouble(
  rows: readonly PsRow[],
  hash: string,
  now: number,
): string | undefined {
  const troubled = rows.filter(
    (row) => row.specHash === hash && (row.status === "failing" || row.status === "failed"),
  );
  if (troubled.length === 0) return undefined;
  return troubled
    .map((row) => {
      const what =
        row.status === "failing"
          ? row.signal
            ? `was killed by ${row.signal}`
            : row.exitCode === undefined
              ? "exited"
              : `exited with code ${row.exitCode}`
          : `cannot start${row.reason ? `: ${row.reason}` : ""}`;
      const next =
        row.restartAt !== undefined && row.restartAt > now
          ? ` (next try in ${formatDuration(row.restartAt - now)})`
          : "";
      return `allocation ${row.id} on ${row.node} ${what}${next}`;
    })
    .join("; ");
}
