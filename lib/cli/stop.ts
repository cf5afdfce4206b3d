/**
 * `mill stop NAME`: stops every replica of a workload and forgets it.
 * Owns: the command and its message. Must not touch: how nodes stop processes (their
 * supervisors do, once the stop is committed).
 */
import { defineCommand } from "citty";
import { consola } from "consola";
import type { WorkloadStopResponse } from "../api/wire.ts";
import { callApi } from "../node/client.ts";
import { checkWorkloadName } from "../workloads/spec.ts";
import { clientArgs } from "./args.ts";
import { UsageError } from "./errors.ts";
import { failure } from "./failure.ts";
import { resolveTarget } from "./target.ts";

const { json: _json, ...targetArgs } = clientArgs;

export const stop = defineCommand({
  meta: { name: "stop", description: "Stop a workload's replicas and forget it" },
  args: {
    name: { type: "positional", description: "The workload's name", required: true },
    ...targetArgs,
  },
  async run({ args }) {
    const problem = checkWorkloadName(args.name);
    if (problem) throw new UsageError(problem);
    const target = await resolveTarget(args);
    const path = `/v1/workloads/${encodeURIComponent(args.name)}`;
    const stopped = await callApi<WorkloadStopResponse>(target, "DELETE", path).catch(failure);
    consola.success(
      `${stopped.name}: stopped; its nodes end ${stopped.stopping} process(es) (SIGTERM, then SIGKILL after 10 s)`,
    );
  },
});
