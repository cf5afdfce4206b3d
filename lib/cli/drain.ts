/**
 * `mill drain NAME` and `mill undrain NAME`: take a node out of scheduling and move its replicas
 * off (each replacement runs before its original stops), or make it schedulable again.
 * Owns: the two commands, the wait and the progress they print. Must not touch: which replica
 * moves where (the leader's scheduler decides, lib/workloads/scheduler.ts).
 */
import { defineCommand } from "citty";
import { consola } from "consola";
import type { DrainResponse, UndrainResponse } from "../api/wire.ts";
import { checkName } from "../cluster/validate.ts";
import { type ClientOptions, callApi } from "../node/client.ts";
import { pollUntil } from "../shared/poll.ts";
import { clientArgs } from "./args.ts";
import { OperationError, UsageError } from "./errors.ts";
import { failure } from "./failure.ts";
import { resolveTarget } from "./target.ts";

/** How long `mill drain` waits for the node to empty before giving up (it stays draining). */
const WAIT_MS = 600_000;
const POLL_MS = 250;

const { json: _json, ...targetArgs } = clientArgs;

const nameArg = {
  name: { type: "positional", description: "The node's name (see mill nodes)", required: true },
} as const;

export const drain = defineCommand({
  meta: {
    name: "drain",
    description: "Stop placing work on a node and move its replicas off; return when it holds none",
  },
  args: { ...nameArg, ...targetArgs },
  async run({ args }) {
    const target = await resolveTarget(args);
    const path = nodePath(args.name, "drain");
    const started = await callApi<DrainResponse>(target, "POST", path).catch(failure);
    await waitDrained(target, path, started);
  },
});

export const undrain = defineCommand({
  meta: { name: "undrain", description: "Make a drained node schedulable again" },
  args: { ...nameArg, ...targetArgs },
  async run({ args }) {
    const target = await resolveTarget(args);
    const path = nodePath(args.name, "undrain");
    const answer = await callApi<UndrainResponse>(target, "POST", path).catch(failure);
    consola.success(
      answer.changed
        ? `${answer.name} takes new work again (nothing moves back by itself)`
        : `${answer.name} was not draining: nothing changed`,
    );
  },
});

/** The API path of a node (or one of its actions), after checking the name as the API will. */
export function nodePath(name: string, action?: string): string {
  const problem = checkName(name, "NAME");
  if (problem) throw new UsageError(problem);
  return `/v1/nodes/${encodeURIComponent(name)}${action === undefined ? "" : `/${action}`}`;
}

/**
 * Polls until the node holds no live allocation (done) or every one left is blocked (exit 1,
 * naming each and why; they keep running). Prints each allocation as it moves off.
 */
export async function waitDrained(
  target: ClientOptions,
  path: string,
  first: DrainResponse,
): Promise<void> {
  const { name } = first;
  let current = first;
  if (current.remaining.length > 0) {
    consola.start(`draining ${name}: ${describeRemaining(current)} to move`);
  }
  /** True once the node is empty; throws when it cannot get there. */
  const check = (): boolean => {
    if (!current.draining) {
      throw new OperationError(`${name} was undrained before it emptied`, "run mill drain again");
    }
    if (current.remaining.length === 0) {
      consola.success(`${name} drained: it holds no allocation (${current.status})`);
      return true;
    }
    if (current.blocked.length === current.remaining.length) {
      const reasons = current.blocked.map(
        (entry) => `${entry.workload} allocation ${entry.id}: ${entry.reason}`,
      );
      throw new OperationError(
        `${name}: could not move ${reasons.join("; ")}. ${current.blocked.length === 1 ? "It keeps" : "They keep"} running on ${name}, which stays draining`,
        `make room and run mill drain ${name} again, or mill undrain ${name}`,
      );
    }
    return false;
  };
  /** Fetches the node's progress and prints what moved off since the last look. */
  const refresh = async (): Promise<void> => {
    const next = await callApi<DrainResponse>(target, "GET", path).catch(failure);
    const left = new Set(next.remaining.map((entry) => entry.id));
    for (const entry of current.remaining) {
      if (!left.has(entry.id)) {
        consola.info(
          `${entry.workload} allocation ${entry.id} moved off ${name} (${next.remaining.length} left)`,
        );
      }
    }
    current = next;
  };
  const timedOut = () =>
    new OperationError(
      `${name}: ${describeRemaining(current)} still there after ${WAIT_MS / 1000} s`,
      `it stays draining; see mill ps, then run mill drain ${name} again`,
    );
  if (check()) return;
  const drained = async () => {
    await refresh();
    return check();
  };
  await pollUntil(drained, WAIT_MS, timedOut, POLL_MS);
}

function describeRemaining(progress: DrainResponse): string {
  const count = progress.remaining.length;
  const workloads = [...new Set(progress.remaining.map((entry) => entry.workload))];
  return `${count} ${count === 1 ? "allocation" : "allocations"} (${workloads.join(", ")})`;
}
