/**
 * The internal API, for node-to-node traffic: heartbeats to the leader, peer-list pulls,
 * allocation status and version reports (nodes.ts), each authenticated as a member (member.ts).
 * Owns: those routes. Must not touch: sockets (the node serves this on its mesh address with
 * WireGuard, never on the public address), the Raft log (heartbeats stay in the leader's memory;
 * only the node's watchdog proposes NodeDown/NodeUp and the resources heartbeats measured; a status report is committed as
 * AllocationStatus for the reporting member, never for another node).
 */

import { type Context, Hono, type MiddlewareHandler } from "hono";
import { parseResources } from "../cluster/validate.ts";
import { peerList } from "../cluster/views.ts";
import { parseDiskSample } from "../shared/node-facts.ts";
import { BASELINE_PROTOCOL, PROTOCOL_HEADER, parseProtocol } from "../shared/protocol.ts";
import { parseWorkloadCommand } from "../workloads/commands.ts";
import type { ApiDeps } from "./deps.ts";
import { fail, finish, jsonBody, refused, validJson } from "./http.ts";
import { type MemberEnv, requireMember } from "./member.ts";
import { createVersionReports } from "./nodes.ts";
import { createTokenSharing } from "./token.ts";
import type { HeartbeatRequest, HeartbeatResponse } from "./wire.ts";
import { createWorkloadInternalRoutes } from "./workloads.ts";

export function createInternalApi(deps: ApiDeps): Hono<MemberEnv> {
  const app = new Hono<MemberEnv>();
  const member = requireMember(deps);
  /** Heartbeats and reports are the leader's to take: any other node answers 421. */
  const leaderOnly: MiddlewareHandler = async (c, next) => {
    const { role, leader } = deps.raft.status();
    if (role !== "leader") return fail(c, 421, `not the leader: send this to node ${leader}`);
    await next();
  };
  const checkReport = (body: unknown, c: Context) => {
    const report = (body ?? {}) as Record<string, unknown>;
    return parseWorkloadCommand({
      type: "AllocationStatus",
      id: report.id,
      node: c.get("member"),
      status: report.status,
      restarts: report.restarts,
      at: deps.now(),
      exitCode: report.exitCode,
      signal: report.signal,
      reason: report.reason,
      restartAt: report.restartAt,
    });
  };

  // Only members get here. The body's data-dir disk sample and resources are optional (a
  // malformed one, one beyond the bounds, or no body counts as none), so a heartbeat is never
  // refused for them. Resources reach the log only through the watchdog, when they differ.
  app.post("/v1/internal/heartbeat", member, leaderOnly, async (c) => {
    const body = (await c.req.json().catch(() => undefined)) as
      | Partial<Record<keyof HeartbeatRequest, unknown>>
      | undefined;
    const status = deps.raft.status();
    const now = deps.now();
    deps.heartbeats.heard(c.get("member"), now, {
      disk: parseDiskSample(body?.disk),
      resources: parseResources(body?.resources),
      // The member check refused any other major; a member before the header speaks the baseline.
      protocol: parseProtocol(c.req.header(PROTOCOL_HEADER)) ?? BASELINE_PROTOCOL,
    });
    const answer: HeartbeatResponse = {
      leader: status.id,
      term: status.term,
      peersVersion: deps.state().peersVersion,
      heardAgoMs: deps.heartbeats.ages(now),
      disks: deps.heartbeats.disks(),
    };
    return c.json(answer, 200);
  });

  app.get("/v1/internal/peers", member, (c) => c.json(peerList(deps.state()), 200));

  app.post(
    "/v1/internal/allocation-status",
    member,
    leaderOnly,
    jsonBody,
    validJson(checkReport),
    async (c) => {
      const result = await deps.commit(c.req.valid("json"));
      return result.ok ? c.json({ changed: result.changed }, 200) : refused(c, result);
    },
  );

  app.route("/", createTokenSharing(deps, member));
  app.route("/", createVersionReports(deps, member, leaderOnly));
  app.route("/", createWorkloadInternalRoutes(deps, member));

  return finish(app, deps);
}
