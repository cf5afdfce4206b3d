/**
 * The workload routes of the public API: run (`mill run`), progress, allocations (`mill ps`),
 * an allocation's output (`mill logs`, read on the node that holds it through the internal route
 * below) and stop (`mill stop`). Owns: those routes. Must not touch: placement (lib/workloads/scheduler.ts
 * decides), workload rules (the FSM applies them), how a refusal or a failure reads over HTTP
 * (http.ts), sockets or Raft internals.
 *
 * Writes are planned and proposed on the leader only, one plan at a time (deps.serializePlans),
 * and only a validated spec is ever planned: bad input (400) and a cluster without room (409)
 * commit nothing. Reads answer from any node after a read barrier.
 */

import { type Context, Hono, type MiddlewareHandler } from "hono";
import { errorMessage } from "../shared/errors.ts";
import { parseLogRequest } from "../workloads/allocation-dirs.ts";
import { planRun, workloadProgress } from "../workloads/scheduler.ts";
import { checkWorkloadName, parseWorkloadRequest } from "../workloads/spec.ts";
import { allocationsOf, isLive } from "../workloads/state.ts";
import { psRows } from "../workloads/view.ts";
import type { ApiDeps } from "./deps.ts";
import { fail, jsonBody, type Outcome, refused, validJson } from "./http.ts";
import { consistentView, forward } from "./routing.ts";
import type {
  AllocationsResponse,
  WorkloadRunResponse,
  WorkloadStatusResponse,
  WorkloadStopResponse,
} from "./wire.ts";

export function createWorkloadRoutes(deps: ApiDeps, auth: MiddlewareHandler): Hono {
  const app = new Hono();

  app.post("/v1/workloads", auth, jsonBody, validJson(parseWorkloadRequest), async (c) => {
    const spec = c.req.valid("json");
    if (!deps.state().cluster) return fail(c, 503, "the cluster is not initialised yet; retry");
    if (deps.raft.status().role !== "leader") return forward(c, deps, await c.req.arrayBuffer());
    const outcome = await deps.serializePlans(async (): Promise<Outcome<WorkloadRunResponse>> => {
      const plan = planRun(deps.state().workloads, deps.state().nodes, spec, deps.now());
      if (!plan.ok) return { ok: false, code: "full", error: plan.error };
      let changed = false;
      if (plan.command) {
        const result = await deps.commit(plan.command);
        if (!result.ok) return result;
        changed = result.changed;
      }
      const progress = workloadProgress(deps.state().workloads, spec.name);
      if (!progress) {
        return { ok: false, code: "conflict", error: `${spec.name} was stopped meanwhile` };
      }
      return { ok: true, answer: { name: spec.name, changed, progress } };
    });
    return outcome.ok ? c.json(outcome.answer, 200) : refused(c, outcome);
  });

  app.get("/v1/workloads/:name", auth, async (c) => {
    const name = c.req.param("name");
    const { workloads, nodes } = (await consistentView(deps)).state;
    const progress = workloadProgress(workloads, name);
    if (!progress) return fail(c, 404, `no workload named ${name}: see mill ps`);
    const answer: WorkloadStatusResponse = {
      progress,
      allocations: psRows(workloads, nodes).filter((row) => row.name === name),
    };
    return c.json(answer, 200);
  });

  app.get("/v1/allocations", auth, async (c) => {
    const view = await consistentView(deps);
    const answer: AllocationsResponse = {
      now: view.now,
      allocations: psRows(view.state.workloads, view.state.nodes),
    };
    return c.json(answer, 200);
  });

  app.get("/v1/allocations/:id/log", auth, async (c) => {
    const id = allocationId(c);
    if (id === undefined) return fail(c, 400, "the allocation id must be a positive integer", "id");
    const request = parseLogRequest(c.req.query());
    if (!request.ok) return fail(c, 400, request.error, request.field);
    const allocation = deps.state().workloads.allocations.get(id);
    if (!allocation) return fail(c, 404, `no allocation ${id}: see mill ps`);
    const node = deps.state().nodes.get(allocation.node);
    const name = node?.name ?? `node ${allocation.node}`;
    try {
      const chunk = await deps.allocationLog(allocation.node, id, request.value);
      if (!chunk) return fail(c, 404, `${name} has no output of allocation ${id} (any more)`);
      return c.json(chunk, 200);
    } catch (error) {
      return fail(
        c,
        503,
        `cannot read allocation ${id}'s output on ${name}: ${errorMessage(error)}`,
      );
    }
  });

  app.delete("/v1/workloads/:name", auth, async (c) => {
    const name = c.req.param("name");
    const problem = checkWorkloadName(name);
    if (problem) return fail(c, 400, problem, "name");
    if (!deps.state().cluster) return fail(c, 503, "the cluster is not initialised yet; retry");
    if (deps.raft.status().role !== "leader") return forward(c, deps, new ArrayBuffer(0));
    const outcome = await deps.serializePlans(async (): Promise<Outcome<WorkloadStopResponse>> => {
      const { workloads } = deps.state();
      if (!workloads.workloads.has(name)) {
        return {
          ok: false,
          code: "unknown-workload",
          error: `no workload named ${name}: see mill ps`,
        };
      }
      const stopping = allocationsOf(workloads, name).filter(isLive).length;
      const result = await deps.commit({ type: "WorkloadStop", name, at: deps.now() });
      return result.ok ? { ok: true, answer: { name, stopping } } : result;
    });
    return outcome.ok ? c.json(outcome.answer, 200) : refused(c, outcome);
  });

  return app;
}

/** The internal route a member asks for an allocation's output that this node holds. */
export function createWorkloadInternalRoutes(deps: ApiDeps, member: MiddlewareHandler): Hono {
  const app = new Hono();
  app.get("/v1/internal/allocations/:id/log", member, async (c) => {
    const id = allocationId(c);
    if (id === undefined) return fail(c, 400, "the allocation id must be a positive integer", "id");
    const request = parseLogRequest(c.req.query());
    if (!request.ok) return fail(c, 400, request.error, request.field);
    const self = deps.raft.status().id;
    const chunk = await deps.allocationLog(self, id, request.value);
    return chunk ? c.json(chunk, 200) : fail(c, 404, `no output of allocation ${id} here`);
  });
  return app;
}

/** The `:id` path parameter as an allocation id, or undefined. */
function allocationId(c: Context): number | undefined {
  const text = c.req.param("id") ?? "";
  const id = /^[1-9]\d{0,15}$/.test(text) ? Number(text) : Number.NaN;
  return Number.isSafeInteger(id) ? id : undefined;
}
