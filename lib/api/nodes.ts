/**
 * The node lifecycle routes of the public API: drain and undrain (`mill drain`, `mill undrain`),
 * how far a drain is, remove (`mill remove`), and whether a node was removed (asked with the token,
 * or, signed, by the removed node itself). Owns: those routes. Must not touch: which
 * replicas move where (lib/workloads/scheduler.ts decides; the leader's reconcile tick commits
 * each step), whether a removal is safe (lib/cluster/lifecycle.ts decides), the rules of the node
 * record (the FSM applies NodeDrain, NodeUndrain, NodeRemove), sockets or Raft internals.
 *
 * Writes are committed on the leader (a follower forwards them once); reads answer from any node
 * after a read barrier. A bad name is 400 and an unknown one 404, with nothing committed.
 * A removal commits the voter removal and NodeRemove as one Raft entry (deps.commitRemoval), one
 * removal at a time, each checked against the state the previous one left.
 */

import { type Context, Hono, type MiddlewareHandler } from "hono";
import { checkRemoval } from "../cluster/lifecycle.ts";
import { type ClusterState, memberByName, type NodeRecord } from "../cluster/state.ts";
import { checkName, checkVersion, removalQuestion, removalStatement } from "../cluster/validate.ts";
import { shownStatus } from "../cluster/views.ts";
import { signWithNodeKey } from "../identity/node-key.ts";
import type { NodeId, RaftStatus } from "../raft/types.ts";
import { drainProgress } from "../workloads/scheduler.ts";
import type { ApiDeps } from "./deps.ts";
import { fail, jsonBody, refused, validJson } from "./http.ts";
import type { MemberEnv } from "./member.ts";
import { consistentView, forward } from "./routing.ts";
import type {
  DrainResponse,
  MemberStatusResponse,
  RemovalAnswer,
  RemoveResponse,
  UndrainResponse,
} from "./wire.ts";

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

  app.delete("/v1/nodes/:name", auth, async (c) => {
    const force = c.req.query("force");
    if (force !== undefined && force !== "true" && force !== "false") {
      return fail(
        c,
        400,
        `force ${JSON.stringify(force.slice(0, 20))} must be true or false`,
        "force",
      );
    }
    const found = await leaderTarget(c, deps);
    if (found instanceof Response) return found;
    const outcome = await deps.serializePlans(async () => {
      const status = deps.raft.status();
      const node = memberByName(deps.state(), found.name);
      if (!node) return fail(c, 404, `no node named ${found.name}: see mill nodes`, "name");
      const check = checkRemoval(deps.state(), status.membership, node, force === "true");
      if (!check.ok) return fail(c, 409, check.error, "name");
      if (node.id === status.id) {
        // Leadership moves first, so the cluster never waits out an election for it.
        const successor = handOverTo(deps.state(), status);
        if (successor === undefined) {
          return fail(
            c,
            409,
            `no other voter of ${node.name}'s cluster is up to take over leadership: bring one back first`,
            "name",
          );
        }
        await deps.raft.transferLeadership(successor);
        return "moved" as const;
      }
      const remove = { type: "NodeRemove", id: node.id, at: deps.now() } as const;
      const result = await deps.commitRemoval(remove);
      if (!result.ok) return refused(c, result);
      const answer: RemoveResponse = {
        name: node.name,
        id: node.id,
        rescheduled: check.liveAllocations,
      };
      return c.json(answer, 200);
    });
    return outcome === "moved" ? forward(c, deps, new ArrayBuffer(0)) : outcome;
  });

  app.get("/v1/members/:id", auth, (c) => {
    const node = knownNode(c, deps);
    if (node instanceof Response) return node;
    const removed = node.status === "left";
    const answer: MemberStatusResponse = { id: node.id, member: !removed, removed };
    return c.json(answer, 200);
  });

  // No token: a removed node may hold only an old one, and the answer proves itself (wire.ts).
  // It tells an anonymous asker no more than whether an id was removed.
  app.post(
    "/v1/members/:id/removal",
    jsonBody,
    validJson((body) => removalQuestion.parse(body, "")),
    (c) => {
      const { cluster } = deps.state();
      if (!cluster) return fail(c, 503, "the cluster is not initialised yet; retry shortly");
      const node = knownNode(c, deps);
      if (node instanceof Response) return node;
      const { nonce } = c.req.valid("json");
      const removed = node.status === "left";
      const signer = deps.raft.status().id;
      const statement = removalStatement(cluster.id, node.id, removed, nonce, signer);
      const answer: RemovalAnswer = {
        id: node.id,
        removed,
        nonce,
        signer,
        signerCert: deps.nodeCertificate.certPem,
        signature: signWithNodeKey(deps.nodeCertificate.keyPem, statement),
      };
      return c.json(answer, 200);
    },
  );

  return app;
}

/**
 * POST /v1/internal/version (member secret, leader only) with `{ version }`: the member runs that
 * Mill version; the leader commits NodeVersion for it (never for another node) when it differs.
 */
export function createVersionReports(
  deps: ApiDeps,
  member: MiddlewareHandler<MemberEnv>,
  leaderOnly: MiddlewareHandler,
): Hono<MemberEnv> {
  const app = new Hono<MemberEnv>();
  const checkReport = (body: unknown) => {
    const version = (body as { version?: unknown } | null)?.version;
    const problem = checkVersion(version, "version");
    return problem === undefined
      ? ({ ok: true, value: version as string } as const)
      : ({ ok: false, problem: { field: "version", error: problem } } as const);
  };
  app.post(
    "/v1/internal/version",
    member,
    leaderOnly,
    jsonBody,
    validJson(checkReport),
    async (c) => {
      const id = c.get("member");
      const result = await deps.commit({ type: "NodeVersion", id, version: c.req.valid("json") });
      return result.ok ? c.json({ changed: result.changed }, 200) : refused(c, result);
    },
  );
  return app;
}

/** The record of the node id in the path: 400 for a malformed id, 404 for one never seen here. */
function knownNode(c: Context, deps: ApiDeps): NodeRecord | Response {
  const text = c.req.param("id") ?? "";
  const id = Number(text);
  if (!/^[1-9][0-9]{0,15}$/.test(text) || !Number.isSafeInteger(id)) {
    return fail(c, 400, `id ${JSON.stringify(text.slice(0, 20))} is not a node id`, "id");
  }
  return deps.state().nodes.get(id) ?? fail(c, 404, `no node ${id} is known here`, "id");
}

/** The voter to hand leadership to: up, and with the most of the log; undefined if none. */
function handOverTo(state: ClusterState, status: RaftStatus): NodeId | undefined {
  let best: NodeId | undefined;
  let bestMatch = -1;
  for (const id of status.membership.voters) {
    if (id === status.id || state.nodes.get(id)?.status !== "ready") continue;
    const match = status.progress?.[id]?.match ?? 0;
    if (match > bestMatch) {
      best = id;
      bestMatch = match;
    }
  }
  return best;
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

function drainAnswer(state: ClusterState, node: NodeRecord): DrainResponse {
  return {
    name: node.name,
    status: shownStatus(node),
    draining: node.draining === true,
    ...drainProgress(state.workloads, state.nodes, node.id),
  };
}
