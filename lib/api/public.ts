/**
 * The public API, served on the public port over TLS: joins, client reads and, through
 * workloads.ts, the workload routes.
 * Owns: routes, authentication by the cluster token, the leader's side of the join exchange
 * (see wire.ts). Must not touch: sockets or TLS (the platform adapter serves this app), Raft
 * internals, cluster rules (the FSM decides; this app proposes and reports).
 *
 * Every route checks the token before anything else and proposes only validated input, so a
 * missing or wrong token, or a malformed body, never reaches the Raft log.
 */

import { Hono } from "hono";
import { type ApplyResult, encodeCommand } from "../cluster/commands.ts";
import { registrationConflict } from "../cluster/fsm.ts";
import { memberByName, memberNodes, type NodeRecord } from "../cluster/state.ts";
import {
  checkPublicKey,
  checkRequestId,
  isLoopback,
  type JoinRequest,
  pickRegistration,
  validateJoinRequest,
} from "../cluster/validate.ts";
import { nodesView, peerList, statusView } from "../cluster/views.ts";
import type { RaftStatus } from "../raft/types.ts";
import { checkFields } from "../shared/fields.ts";
import type { ApiDeps } from "./deps.ts";
import { deadline, fail, finish, readJson, unavailable } from "./http.ts";
import { JoinLedger } from "./replay.ts";
import { consistentView, forward, requireToken } from "./routing.ts";
import { createTokenRoutes } from "./token.ts";
import type { JoinConfirmRequest, JoinConfirmResponse, JoinResponse, RaftInfo } from "./wire.ts";
import { createWorkloadRoutes } from "./workloads.ts";

type Outcome =
  | { readonly status: 200; readonly body: JoinResponse }
  | { readonly status: 400 | 409 | 503; readonly error: string; readonly field?: string };

export function createPublicApi(deps: ApiDeps): Hono {
  const app = new Hono();
  const auth = requireToken(deps);
  /** Joins in flight on this leader by request, so a retry racing its original shares one proposal. */
  const joining = new Map<string, Promise<Outcome>>();
  /** Request ids bound to their registration, so a replay cannot change it (replay.ts). */
  const ledger = new JoinLedger();

  app.post("/v1/join", auth, async (c) => {
    const body = await readJson(c);
    if (!body.ok) return body.response;
    const state = deps.state();
    if (!state.cluster) return fail(c, 503, "the cluster is not initialised yet; retry shortly");
    const loopbackCluster = memberNodes(state).every((node) => isLoopback(node.advertise));
    const checked = validateJoinRequest(body.value, loopbackCluster);
    if (!checked.ok) return fail(c, 400, checked.problem.error, checked.problem.field);
    const join = checked.value;
    if (join.mesh !== state.cluster.mesh) {
      return fail(
        c,
        409,
        `the cluster runs with --mesh ${state.cluster.mesh}: run mill join with --mesh ${state.cluster.mesh}`,
        "mesh",
      );
    }
    if (deps.raft.status().role !== "leader") return forward(c, deps, body.bytes);
    const registration = JSON.stringify(pickRegistration(join));
    if (ledger.conflicts(join.requestId, registration)) {
      return fail(
        c,
        409,
        `request ${join.requestId} was already used with other details: a retry must resend the same body, a new join needs a new request id`,
        "requestId",
      );
    }
    ledger.remember(join.requestId, registration);
    const key = `${join.requestId}\n${join.name}\n${join.wgPublicKey}`;
    let pending = joining.get(key);
    if (!pending) {
      pending = register(deps, join).finally(() => joining.delete(key));
      joining.set(key, pending);
    }
    try {
      const outcome = await pending;
      return outcome.status === 200
        ? c.json(outcome.body, 200)
        : fail(c, outcome.status, outcome.error, outcome.field);
    } catch (error) {
      return unavailable(c, deps, error);
    }
  });

  app.post("/v1/join/confirm", auth, async (c) => {
    const body = await readJson(c);
    if (!body.ok) return body.response;
    const problem = checkFields(body.value, CONFIRM_RULES);
    if (problem) return fail(c, 400, problem.error, problem.field);
    const confirm = body.value as JoinConfirmRequest;
    if (deps.raft.status().role !== "leader") return forward(c, deps, body.bytes);
    const node = deps.state().nodes.get(confirm.nodeId);
    if (!node || node.status === "left") {
      return fail(
        c,
        409,
        `node ${confirm.nodeId} is not registered: run mill join again`,
        "nodeId",
      );
    }
    if (node.wgPublicKey !== confirm.wgPublicKey) {
      return fail(
        c,
        409,
        `node ${node.id} (${node.name}) registered with another WireGuard key: run mill join again from its data dir`,
        "wgPublicKey",
      );
    }
    // A joiner's confirmation is a sign of life: until it is a voter it sends no heartbeats, so
    // its silence would otherwise count from its registration, before its node even started.
    deps.heartbeats.heard(node.id, deps.now());
    try {
      await deps.raft.addVoter(node.id);
    } catch (error) {
      return unavailable(c, deps, error);
    }
    deps.heartbeats.heard(node.id, deps.now());
    const answer: JoinConfirmResponse = {
      node: { id: node.id, name: node.name },
      raft: raftInfo(deps.raft.status()),
    };
    return c.json(answer, 200);
  });

  app.get("/v1/status", auth, async (c) => {
    const input = await consistentView(c, deps);
    return input instanceof Response ? input : c.json(statusView(input), 200);
  });

  app.get("/v1/nodes", auth, async (c) => {
    const input = await consistentView(c, deps);
    return input instanceof Response ? input : c.json(nodesView(input), 200);
  });

  app.route("/", createWorkloadRoutes(deps, auth));
  app.route("/", createTokenRoutes(deps, auth));

  return finish(app, deps);
}

const CONFIRM_RULES = {
  requestId: checkRequestId,
  nodeId: (value: unknown, field: string) =>
    Number.isSafeInteger(value) && (value as number) > 0
      ? undefined
      : `${field} is not a node id: send the id /v1/join answered with`,
  wgPublicKey: checkPublicKey,
};

/**
 * Registers on the leader. An identical registration already applied is answered without a
 * proposal; anything else goes through the log, where the FSM decides (new, rejoin, conflict).
 */
async function register(deps: ApiDeps, join: JoinRequest): Promise<Outcome> {
  const registration = pickRegistration(join);
  const existing = memberByName(deps.state(), join.name);
  let node: NodeRecord;
  if (existing && JSON.stringify(pickRegistration(existing)) === JSON.stringify(registration)) {
    node = existing;
  } else {
    const clash = registrationConflict(deps.state(), registration);
    if (clash && !clash.ok) return { status: 409, error: clash.error, field: clash.field };
    const command = encodeCommand({ type: "NodeRegister", ...registration, at: deps.now() });
    const result = (await deadline(
      deps.raft.propose(command),
      deps.commitTimeoutMs,
    )) as ApplyResult;
    if (!result.ok) {
      const status = result.code === "invalid" ? 400 : result.code === "uninitialised" ? 503 : 409;
      return { status, error: result.error, ...(result.field ? { field: result.field } : {}) };
    }
    node = result.node!;
  }
  const state = deps.state();
  const cluster = state.cluster!;
  return {
    status: 200,
    body: {
      cluster: {
        id: cluster.id,
        ...(cluster.name === undefined ? {} : { name: cluster.name }),
        mesh: cluster.mesh,
        meshCidr: cluster.meshCidr,
      },
      node: { id: node.id, name: node.name, meshAddress: node.meshAddress },
      ...peerList(state),
      raft: raftInfo(deps.raft.status()),
      tls: deps.tlsIdentity(),
    },
  };
}

function raftInfo(status: RaftStatus): RaftInfo {
  return {
    leader: status.leader,
    term: status.term,
    voters: status.membership.voters,
    learners: status.membership.learners,
  };
}
