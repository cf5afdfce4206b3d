/**
 * The workload routes of the public API: run (`mill run`), progress, allocations (`mill ps`) and
 * stop (`mill stop`). Owns: those routes and how their outcomes map to HTTP statuses. Must not
 * touch: placement (lib/workloads/scheduler.ts decides), workload rules (the FSM applies them),
 * sockets or Raft internals.
 *
 * Writes are planned and proposed on the leader only, one plan at a time (deps.serializePlans),
 * and only a validated spec is ever planned: bad input (400) and a cluster without room (409)
 * commit nothing. Reads answer from any node after a read barrier.
 */

import { Hono, type MiddlewareHandler } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { type ApplyErrorCode, type ApplyResult, encodeCommand } from "../cluster/commands.ts";
import { planRun, workloadProgress } from "../workloads/scheduler.ts";
import { checkWorkloadName, parseWorkloadRequest } from "../workloads/spec.ts";
import { allocationsOf, isLive, type WorkloadCommand } from "../workloads/state.ts";
import { psRows } from "../workloads/view.ts";
import type { ApiDeps } from "./deps.ts";
import { deadline, fail, readJson, unavailable } from "./http.ts";
import { consistentView, forward } from "./routing.ts";
import type {
  AllocationsResponse,
  WorkloadRunResponse,
  WorkloadStatusResponse,
  WorkloadStopResponse,
} from "./wire.ts";

type Refusal = {
  readonly refused: ContentfulStatusCode;
  readonly error: string;
  readonly field?: string;
};

export function createWorkloadRoutes(deps: ApiDeps, auth: MiddlewareHandler): Hono {
  const app = new Hono();

  app.post("/v1/workloads", auth, async (c) => {
    const body = await readJson(c);
    if (!body.ok) return body.response;
    const checked = parseWorkloadRequest(body.value);
    if (!checked.ok) return fail(c, 400, checked.problem.error, checked.problem.field);
    if (!deps.state().cluster) return fail(c, 503, "the cluster is not initialised yet; retry");
    if (deps.raft.status().role !== "leader") return forward(c, deps, body.bytes);
    const { spec } = checked;
    try {
      const outcome = await deps.serializePlans(
        async (): Promise<WorkloadRunResponse | Refusal> => {
          const plan = planRun(deps.state().workloads, deps.state().nodes, spec, deps.now());
          if (!plan.ok) return { refused: 409, error: plan.error };
          let changed = false;
          if (plan.command) {
            const result = await commit(deps, plan.command);
            if (!result.ok) return refusal(result);
            changed = result.changed;
          }
          const progress = workloadProgress(deps.state().workloads, spec.name);
          if (!progress) return { refused: 409, error: `${spec.name} was stopped meanwhile` };
          return { name: spec.name, changed, progress };
        },
      );
      return "refused" in outcome
        ? fail(c, outcome.refused, outcome.error, outcome.field)
        : c.json(outcome, 200);
    } catch (error) {
      return unavailable(c, deps, error);
    }
  });

  app.get("/v1/workloads/:name", auth, async (c) => {
    const name = c.req.param("name");
    const view = await consistentView(c, deps);
    if (view instanceof Response) return view;
    const { workloads, nodes } = view.state;
    const progress = workloadProgress(workloads, name);
    if (!progress) return fail(c, 404, `no workload named ${name}: see mill ps`);
    const answer: WorkloadStatusResponse = {
      progress,
      allocations: psRows(workloads, nodes).filter((row) => row.name === name),
    };
    return c.json(answer, 200);
  });

  app.get("/v1/allocations", auth, async (c) => {
    const view = await consistentView(c, deps);
    if (view instanceof Response) return view;
    const answer: AllocationsResponse = {
      now: view.now,
      allocations: psRows(view.state.workloads, view.state.nodes),
    };
    return c.json(answer, 200);
  });

  app.delete("/v1/workloads/:name", auth, async (c) => {
    const name = c.req.param("name");
    const problem = checkWorkloadName(name);
    if (problem) return fail(c, 400, problem, "name");
    if (!deps.state().cluster) return fail(c, 503, "the cluster is not initialised yet; retry");
    if (deps.raft.status().role !== "leader") return forward(c, deps, new Uint8Array(0));
    try {
      const outcome = await deps.serializePlans(
        async (): Promise<WorkloadStopResponse | Refusal> => {
          const { workloads } = deps.state();
          if (!workloads.workloads.has(name)) {
            return { refused: 404, error: `no workload named ${name}: see mill ps` };
          }
          const stopping = allocationsOf(workloads, name).filter(isLive).length;
          const result = await commit(deps, { type: "WorkloadStop", name, at: deps.now() });
          return result.ok ? { name, stopping } : refusal(result);
        },
      );
      return "refused" in outcome
        ? fail(c, outcome.refused, outcome.error, outcome.field)
        : c.json(outcome, 200);
    } catch (error) {
      return unavailable(c, deps, error);
    }
  });

  return app;
}

async function commit(deps: ApiDeps, command: WorkloadCommand): Promise<ApplyResult> {
  return (await deadline(
    deps.raft.propose(encodeCommand(command)),
    deps.commitTimeoutMs,
  )) as ApplyResult;
}

const REFUSAL_STATUS: Partial<Record<ApplyErrorCode, ContentfulStatusCode>> = {
  invalid: 400,
  "unknown-workload": 404,
  uninitialised: 503,
};

function refusal(result: Extract<ApplyResult, { ok: false }>): Refusal {
  return {
    refused: REFUSAL_STATUS[result.code] ?? 409,
    error: result.error,
    ...(result.field ? { field: result.field } : {}),
  };
}
