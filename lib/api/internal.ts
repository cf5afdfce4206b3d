/**
 * The internal API, for node-to-node traffic: heartbeats to the leader, peer-list pulls and
 * allocation status reports, each authenticated as a member (member.ts).
 * Owns: those routes. Must not touch: sockets (the node serves this on its mesh address with
 * WireGuard, never on the public address), the Raft log (heartbeats stay in the leader's memory;
 * only the node's watchdog proposes NodeDown/NodeUp; a status report is committed as
 * AllocationStatus for the reporting member, never for another node).
 */

import { type Context, Hono } from "hono";
import { type ApplyResult, encodeCommand } from "../cluster/commands.ts";
import { peerList } from "../cluster/views.ts";
import { parseWorkloadCommand } from "../workloads/wire.ts";
import type { ApiDeps } from "./deps.ts";
import { deadline, fail, finish, readJson, unavailable } from "./http.ts";
import { type MemberEnv, requireMember } from "./member.ts";
import { createTokenSharing } from "./token.ts";
import type { HeartbeatResponse } from "./wire.ts";

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
