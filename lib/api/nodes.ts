/**
 * The node lifecycle routes of the public API: drain and undrain (`mill drain`, `mill undrain`)
 * and how far a drain is. Owns: those routes. Must not touch: which replicas move where
 * (lib/workloads/scheduler.ts decides; the leader's reconcile tick commits each step), the
 * rules of the node record (the FSM applies NodeDrain and NodeUndrain), sockets or Raft internals.
 *
 * Writes are committed on the leader (a follower forwards them once); reads answer from any node
 * after a read barrier. A bad name is 400 and an unknown one 404, with nothing committed.
 */

import { type Context, Hono, type MiddlewareHandler } from "hono";
import { memberByName, type NodeRecord } from "../cluster/state.ts";
import { checkName } from "../cluster/validate.ts";
import { shownStatus } from "../cluster/views.ts";
import { drainProgress } from "../workloads/scheduler.ts";
import type { ApiDeps } from "./deps.ts";
import { fail, refused } from "./http.ts";
import { consistentView, forward } from "./routing.ts";
import type { DrainResponse, UndrainResponse } from "./wire.ts";

export function createNodeRoutes(deps: ApiDeps, auth: MiddlewareHandler): Hono {
  const app = new Hono();

  app.post("/v1/nodes/:name/drain", auth, async (c) => {
    const found = await leaderTarget(c, deps);
    if (found instanceof Response) return found;
    const result = await deps.commit({ type: "NodeDrain", id: found.id, at: deps.now() });
    if (!result.ok) return refused(c, result);
    return c.json(drainAnswer(deps.state(), result.node ?? found), 200);
  });

  app.get("/v1/nodes/:name/drain", auth, async (c) => {
    const name = c.req.param("name");
    const problem = checkName(name, "name");
    if (problem) return fail(c, 400, problem, "name");
    const { state } = await consistentView(deps);
    const node = memberByName(state, name);
    if (!node) return fail(c, 404, `no node named ${name}: see mill nodes`, "name");
    return c.json(drainAnswer(state, node), 200);
  });

  app.post("/v1/nodes/:name/undrain", auth, async (c) => {
    const found = await leaderTarget(c, deps);
    if (found instanceof Response) return found;
    const result = await deps.commit({ type: "NodeUndrain", id: found.id, at: deps.now() });
    if (!result.ok) return refused(c, result);
    const answer: UndrainResponse = { name: found.name, changed: result.changed };
    return c.json(answer, 200);
  });

  return app;
}

/**
 * The member a node write names, on the leader: 400 for a bad name, 404 for an unknown one, the
 * leader's answer when this node is a follower.
 */
async function leaderTarget(c: Context, deps: ApiDeps): Promise<NodeRecord | Response> {
  const name = c.req.param("name") ?? "";
  const problem = checkName(name, "name");
  if (problem) return fail(c, 400, problem, "name");
  if (!deps.state().cluster) return fail(c, 503, "the cluster is not initialised yet; retry");
  if (deps.raft.status().role !== "leader") return forward(c, deps, new ArrayBuffer(0));
  const node = memberByName(deps.state(), name);
  return node ?? fail(c, 404, `no node named ${name}: see mill nodes`, "name");
}

function drainAnswer(state: ReturnType<ApiDeps["state"]>, node: NodeRecord): DrainResponse {
  return {
    name: node.name,
    status: shownStatus(node),
    draining: node.draining === true,
    ...drainProgress(state.workloads, state.nodes, node.id),
  };
}
