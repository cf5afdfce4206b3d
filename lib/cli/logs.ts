/**
 * `mill logs NAME [--follow] [--tail N]`: a workload's output from whichever node runs it. Any
 * node answers: the one asked reads the output on the node that holds each allocation.
 * Owns: the command, choosing which allocations to show, and printing. Must not touch: where
 * logs live (lib/workloads/allocation-dirs.ts), how nodes reach each other (the API does).
 *
 * Decisions recorded here:
 * - It shows the workload's live allocations; with none, its newest one (a stopped or lost
 *   replica's output is still on its node while the directory is kept).
 * - With more than one allocation every line is prefixed `[ID NODE]`, so replicas can be told
 *   apart; with one, the output is passed through unchanged.
 * - `--follow` asks each node for what was written since the last offset, once a second, and
 *   takes in replicas that start meanwhile; it ends on Ctrl-C.
 */
import { defineCommand } from "citty";
import type { WorkloadStatusResponse } from "../api/wire.ts";
import { type ClientOptions, callApi } from "../node/client.ts";
import {
  type LogChunk,
  type LogRequest,
  logQuery,
  MAX_TAIL_LINES,
} from "../workloads/allocation-dirs.ts";
import { checkWorkloadName } from "../workloads/spec.ts";
import type { PsRow } from "../workloads/view.ts";
import { clientArgs } from "./args.ts";
import { OperationError, UsageError } from "./errors.ts";
import { failure } from "./failure.ts";
import { resolveTarget } from "./target.ts";

const FOLLOW_POLL_MS = 1_000;
const LIVE = new Set(["pending", "running", "failing", "failed"]);

const { json: _json, ...targetArgs } = clientArgs;

export const logs = defineCommand({
  meta: { name: "logs", description: "Show a workload's output, from whichever node runs it" },
  args: {
    name: { type: "positional", description: "The workload's name", required: true },
    follow: { type: "boolean", alias: "f", description: "Keep printing new output (Ctrl-C ends)" },
    tail: { type: "string", description: "Only the last N lines of each replica", valueHint: "N" },
    ...targetArgs,
  },
  async run({ args }) {
    const problem = checkWorkloadName(args.name);
    if (problem) throw new UsageError(problem);
    const tail = parseTail(args.tail);
    const target = await resolveTarget(args);
    const path = `/v1/workloads/${encodeURIComponent(args.name)}`;
    const shown = async () =>
      chooseAllocations(
        (await callApi<WorkloadStatusResponse>(target, "GET", path).catch(failure)).allocations,
      );
    const readers = new Map<number, Reader>();
    for (;;) {
      const rows = await shown();
      if (rows.length === 0 && readers.size === 0) {
        throw new OperationError(`${args.name} has no allocations to show`, "see mill ps");
      }
      for (const row of rows) {
        if (!readers.has(row.id)) readers.set(row.id, new Reader(row, tail));
      }
      const prefixed = readers.size > 1;
      for (const reader of readers.values()) await reader.drain(target, prefixed);
      if (!args.follow) return;
      await new Promise((resolve) => setTimeout(resolve, FOLLOW_POLL_MS));
    }
  },
});

/** --tail as a line count, or undefined for the whole output. */
export function parseTail(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = /^\d{1,6}$/.test(text) ? Number(text) : Number.NaN;
  if (!(value >= 1 && value <= MAX_TAIL_LINES)) {
    throw new UsageError(`--tail "${text}" is not a line count from 1 to ${MAX_TAIL_LINES}`);
  }
  return value;
}

/** The allocations whose output `mill logs` shows: the live ones, else the newest. */
export function chooseAllocations(rows: readonly PsRow[]): PsRow[] {
  const live = rows.filter((row) => LIVE.has(row.status));
  if (live.length > 0) return live;
  const newest = [...rows].sort((a, b) => b.id - a.id)[0];
  return newest ? [newest] : [];
}

/** One allocation's output, read in chunks from where the last read ended. */
class Reader {
  #request: LogRequest;
  /** A line started in an earlier chunk, held back while lines are prefixed. */
  #partial = "";

  constructor(
    readonly row: PsRow,
    tail: number | undefined,
  ) {
    this.#request = tail === undefined ? { from: 0 } : { tail };
  }

  /** Prints everything written so far (chunk by chunk). */
  async drain(target: ClientOptions, prefixed: boolean): Promise<void> {
    for (;;) {
      const path = `/v1/allocations/${this.row.id}/log?${logQuery(this.#request)}`;
      const chunk = await callApi<LogChunk>(target, "GET", path).catch(failure);
      this.#print(chunk.text, prefixed);
      this.#request = { from: chunk.offset };
      if (chunk.offset >= chunk.size) return;
    }
  }

  #print(text: string, prefixed: boolean): void {
    if (!prefixed) {
      process.stdout.write(text);
      return;
    }
    const lines = (this.#partial + text).split("\n");
    this.#partial = lines.pop() ?? "";
    const label = `[${this.row.id} ${this.row.node}] `;
    if (lines.length > 0) process.stdout.write(lines.map((line) => `${label}${line}\n`).join(""));
  }
}
