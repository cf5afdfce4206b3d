/**
 * `mill run NAME [--replicas N] [--cpu C] [--memory M] [--env K=V]... -- COMMAND [ARGS...]`:
 * commits a workload and waits until every replica runs and none has exited within
 * STARTUP_WATCH_MS after that, printing progress; a replica that exits or cannot start fails it
 * with its exit code or error.
 * Owns: the command's flags, their parsing and the wait. Must not touch: validation rules
 * (lib/workloads/spec.ts), placement (the leader decides), printing of other commands.
 */
import { defineCommand } from "citty";
import { consola } from "consola";
import type { WorkloadRunResponse, WorkloadStatusResponse } from "../api/wire.ts";
import { callApi } from "../node/client.ts";
import { pollUntil } from "../shared/poll.ts";
import type { WorkloadProgress } from "../workloads/scheduler.ts";
import { parseWorkloadRequest, specHash, type WorkloadRequest } from "../workloads/spec.ts";
import { startupTrouble } from "../workloads/view.ts";
import { clientArgs } from "./args.ts";
import { OperationError, UsageError } from "./errors.ts";
import { failure } from "./failure.ts";
import { resolveTarget } from "./target.ts";

/** How long `mill run` waits for every replica to run before giving up (the workload stays). */
const WAIT_MS = 120_000;
const POLL_MS = 250;
/** How long every replica must keep running before `mill run` calls the start a success. */
const STARTUP_WATCH_MS = 3_000;

const { json: _json, ...targetArgs } = clientArgs;

export const workloadRun = defineCommand({
  meta: {
    name: "run",
    description: "Run a command as a workload: mill run NAME [flags] -- COMMAND [ARGS...]",
  },
  args: {
    name: { type: "positional", description: "The workload's name (a DNS label)", required: true },
    replicas: { type: "string", description: "How many copies to run", default: "1" },
    cpu: { type: "string", description: "Cores reserved per replica", default: "0.25" },
    memory: { type: "string", description: "Memory reserved per replica", default: "256M" },
    env: {
      type: "string",
      description: "KEY=VALUE for the process's environment (repeatable)",
      valueHint: "KEY=VALUE",
    },
    ...targetArgs,
  },
  async run({ args, rawArgs }) {
    const request = runRequest(args.name, rawArgs, args);
    const checked = parseWorkloadRequest(request);
    if (!checked.ok) throw new UsageError(checked.problem.error);
    const target = await resolveTarget(args);
    const started = await callApi<WorkloadRunResponse>(
      target,
      "POST",
      "/v1/workloads",
      request,
    ).catch(failure);
    if (!started.changed && started.progress.done) {
      consola.success(`${started.name}: unchanged, ${describe(started.progress)}`);
      return;
    }
    consola.start(`${started.name}: ${describe(started.progress)}`);
    const path = `/v1/workloads/${encodeURIComponent(started.name)}`;
    const hash = specHash(checked.value);
    let shown = describe(started.progress);
    /** When every replica ran, the end of the watch for early exits. */
    let watchUntil: number | undefined;
    const allRunning = async (): Promise<boolean> => {
      const current = await callApi<WorkloadStatusResponse>(target, "GET", path).catch(failure);
      const { progress } = current;
      const trouble = startupTrouble(current.allocations, hash, Date.now());
      if (trouble) {
        throw new OperationError(
          `${progress.name}: ${trouble}`,
          `see its output with mill logs ${progress.name}; fix the command and run again (the workload stays until mill stop ${progress.name})`,
        );
      }
      if (progress.done) {
        watchUntil ??= Date.now() + STARTUP_WATCH_MS;
        if (Date.now() < watchUntil) return false;
        consola.success(`${progress.name}: ${describe(progress)}`);
        return true;
      }
      watchUntil = undefined;
      const now = describe(progress);
      if (now !== shown) consola.info(`${progress.name}: ${now}`);
      shown = now;
      return false;
    };
    const timedOut = () =>
      new OperationError(
        `${started.name}: not every replica runs after ${WAIT_MS / 1000} s (${shown})`,
        "the workload stays committed; see mill ps and the nodes' mill.log",
      );
    await pollUntil(allRunning, WAIT_MS, timedOut, POLL_MS);
  },
});

/**
 * The request from the parsed flags and the raw argv: citty keeps only the last of repeated
 * flags and folds the command after `--` into positionals, so both are read from rawArgs.
 */
export function runRequest(
  name: string,
  rawArgs: readonly string[],
  flags: { replicas: string; cpu: string; memory: string },
): WorkloadRequest {
  const split = rawArgs.indexOf("--");
  const own = split < 0 ? rawArgs : rawArgs.slice(0, split);
  const command = split < 0 ? [] : rawArgs.slice(split + 1);
  if (!own.includes(name)) {
    throw new UsageError("the workload's NAME is missing: mill run NAME -- COMMAND");
  }
  if (command.length === 0) {
    throw new UsageError(
      "no command: put it after --, e.g. mill run web -- sleep 1000",
      "mill run NAME [--replicas N] [--cpu C] [--memory M] [--env K=V]... -- COMMAND [ARGS...]",
    );
  }
  const env: string[] = [];
  for (let i = 0; i < own.length; i++) {
    const arg = own[i]!;
    if (arg === "--env") {
      const value = own[++i];
      if (value === undefined) throw new UsageError("--env needs a value: --env KEY=VALUE");
      env.push(value);
    } else if (arg.startsWith("--env=")) {
      env.push(arg.slice("--env=".length));
    }
  }
  return {
    name,
    replicas: flags.replicas,
    cpu: flags.cpu,
    memory: flags.memory,
    env,
    command,
  };
}

function describe(progress: WorkloadProgress): string {
  const parts = [`${progress.running}/${progress.replicas} running`];
  if (progress.pending > 0) parts.push(`${progress.pending} pending`);
  if (progress.outdated > 0) parts.push(`${progress.outdated} of the previous spec to replace`);
  return parts.join(", ");
}
