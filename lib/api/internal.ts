/**
 * The internal API, for node-to-node traffic: heartbeats to the leader, peer-list pulls and
 * allocation status reports.
 * Owns: those routes and member authentication. Must not touch: sockets (the node serves this on
 * its mesh address with WireGuard, never on the public address), the Raft log (heartbeats stay in
 * the leader's memory; only the node's watchdog proposes NodeDown/NodeUp; a status report is
 * committed as AllocationStatus for the reporting member, never for another node).
 *
 * Member authentication: each joiner generates a random member secret (at least 128 bits, kept
 * 0600 in its data dir) and sends only its hashSecret() digest in POST /v1/join; the digest is
 * committed in its NodeRecord, so every node can verify every member without a shared key and a
 * leader change needs no hand-over. Requests carry `x-mill-node: <id>` and
 * `Authorization: Bearer <member secret>`, compared in constant time against that digest. The
 * secret crosses the network only inside WireGuard (or, with `--mesh none`, on the TLS public
 * port if the node mounts this app there). A departed node's secret stops working with its
 * NodeRemove; the join token is never accepted here, so a leaked member secret cannot join nodes.
 */

import { type Context, Hono, type MiddlewareHandler } from "hono";
import { type ApplyResult, encodeCommand } from "../cluster/commands.ts";
import { peerList } from "../cluster/views.ts";
import { bearerMatches } from "../identity/token.ts";
import { parseWorkloadCommand } from "../workloads/wire.ts";
import type { ApiDeps } from "./deps.ts";
import { deadline, fail, finish, readJson, unavailable } from "./http.ts";
import { createTokenSharing } from "./token.ts";
import { type HeartbeatResponse, MEMBER_HEADER } from "./wire.ts";

export type MemberEnv = { Variables: { member: number } };

export function createInternalApi(deps: ApiDeps): Hono<MemberEnv> {
  const app = new Hono<MemberEnv>();
  const member = requireMember(deps);

  app.post("/v1/internal/heartbeat", member, (c) => {
    const status = deps.raft.status();
    if (status.role !== "leader") return notLeader(c, status.leader);
    const now = deps.now();
    deps.heartbeats.heard(c.get("member"), now);
    const answer: HeartbeatResponse = {
      leader: status.id,
      term: status.term,
      peersVersion: deps.state().peersVersion,
      heardAgoMs: deps.heartbeats.ages(now),
    };
    return c.json(answer, 200);
  });

  app.get("/v1/internal/peers", member, (c) => c.json(peerList(deps.state()), 200));

  app.post("/v1/internal/allocation-status", member, async (c) => {
    const status = deps.raft.status();
    if (status.role !== "leader") return notLeader(c, status.leader);
    const body = await readJson(c);
    if (!body.ok) return body.response;
    const report = (body.value ?? {}) as Record<string, unknown>;
    const parsed = parseWorkloadCommand({
      type: "AllocationStatus",
      id: report.id,
      node: c.get("member"),
      status: report.status,
      restarts: report.restarts,
      at: deps.now(),
    });
    if (!parsed.ok) return fail(c, 400, parsed.problem.error, parsed.problem.field);
    try {
      const result = (await deadline(
        deps.raft.propose(encodeCommand(parsed.command)),
        deps.commitTimeoutMs,
      )) as ApplyResult;
      return result.ok ? c.json({ changed: result.changed }, 200) : fail(c, 409, result.error);
    } catch (error) {
      return unavailable(c, deps, error);
    }
  });

  app.route("/", createTokenSharing(deps, member));

  return finish(app, deps);
}

function notLeader(c: Context, leader: number): Response {
  return fail(c, 421, `not the leader: send this to node ${leader}`);
}

function requireMember(deps: ApiDeps): MiddlewareHandler<MemberEnv> {
  return async (c, next) => {
    const id = Number(c.req.header(MEMBER_HEADER));
    const node = Number.isSafeInteger(id) ? deps.state().nodes.get(id) : undefined;
    // Check a hash even for an unknown id, so timing does not reveal which ids exist.
    const hash = node?.memberSecretHash ?? "0".repeat(64);
    if (!bearerMatches(c.req.header("authorization"), hash) || !node) {
      return fail(c, 401, "unknown member or wrong member secret");
    }
    if (node.status === "left") {
      return fail(c, 403, `node ${id} has left the cluster: run mill join to come back`);
    }
    c.set("member", id);
    await next();
  };
}
