/**
 * The public API, served on the public port over TLS: joins, client reads and, through
 * workloads.ts and nodes.ts, the workload and node lifecycle routes.
 * Owns: routes, authentication by the cluster token, the leader's side of the join exchange
 * and of a join's withdrawal (see wire.ts). Must not touch: sockets or TLS (the platform adapter serves this app), Raft
 * internals, cluster rules (the FSM decides; this app proposes and reports).
 *
 * Every route checks the token before anything else and proposes only validated input, so a
 * missing or wrong token, or a malformed body, never reaches the Raft log. The one route without
 * a token, a node asking whether it was removed (nodes.ts), reads the state and signs its answer.
 */

import { type Context, Hono, type MiddlewareHandler } from "hono";
import { registrationConflict } from "../cluster/fsm.ts";
import { clusterProtocol } from "../cluster/protocol-gate.ts";
import { memberByName, memberNodes, type NodeRecord } from "../cluster/state.ts";
import {
  checkName,
  checkNodeId,
  checkPublicKey,
  checkRequestId,
  isLoopback,
  type JoinRequest,
  type JoinWithdrawal,
  joinProtocol,
  joinWithdrawal,
  nodeRegistration,
  registrationStatement,
  validateJoinRequest,
  withdrawalStatement,
} from "../cluster/validate.ts";
import { nodesView, peerList, statusView } from "../cluster/views.ts";
import { nodeKeyOf, signedByNodeKey } from "../identity/node-key.ts";
import type { NodeId, RaftStatus } from "../raft/types.ts";
import {
  compatibleProtocols,
  formatProtocol,
  PROTOCOL_VERSION,
  type ProtocolVersion,
  protocolRefusal,
  UNVERSIONED_JOIN,
} from "../shared/protocol.ts";
import { leaf, object, type Schema } from "../shared/schema.ts";
import type { ApiDeps } from "./deps.ts";
import { fail, finish, jsonBody, type Outcome, refused, validJson } from "./http.ts";
import { createNodeRoutes } from "./nodes.ts";
import { JoinLedger } from "./replay.ts";
import { consistentView, forward, requireToken } from "./routing.ts";
import { createTokenRoutes } from "./token.ts";
import type {
  JoinConfirmRequest,
  JoinConfirmResponse,
  JoinResponse,
  JoinWithdrawResponse,
  RaftInfo,
} from "./wire.ts";
import { createWorkloadRoutes } from "./workloads.ts";

/**
 * Registrations that may wait at once for their node to become a voter: a token holder cannot
 * park more than this many (each expires, see lib/cluster/health.ts).
 */
export const MAX_PENDING_JOINS = 16;

export function createPublicApi(deps: ApiDeps): Hono {
  const app = new Hono();
  const auth = requireToken(deps);
  /** Joins in flight on this leader by request, so a retry racing its original shares one proposal. */
  const joining = new Map<string, Promise<Outcome<JoinResponse>>>();
  /** Request ids bound to their registration, so a replay cannot change it (replay.ts). */
  const ledger = new JoinLedger();
  const checkJoin = (body: unknown) => {
    const loopbackCluster = memberNodes(deps.state()).every((node) => isLoopback(node.advertise));
    return validateJoinRequest(body, loopbackCluster);
  };

  app.post("/v1/join", auth, jsonBody, sameProtocolMajor(deps), validJson(checkJoin), async (c) => {
    const join = c.req.valid("json");
    const outdated = refuseJoinProtocol(c, deps, join.protocol ?? UNVERSIONED_JOIN, join.name);
    if (outdated) return outdated;
    if (!holdsNodeKey(join)) {
      return fail(
        c,
        403,
        "the join is not signed by the node key it registers: run mill join from the node's own data dir",
        "signature",
      );
    }
    const { cluster } = deps.state();
    if (!cluster) return fail(c, 503, "the cluster is not initialised yet; retry shortly");
    if (join.mesh !== cluster.mesh) {
      return fail(
        c,
        409,
        `the cluster runs with --mesh ${cluster.mesh}: run mill join with --mesh ${cluster.mesh}`,
        "mesh",
      );
    }
    if (deps.raft.status().role !== "leader") return forward(c, deps, await c.req.arrayBuffer());
    const registration = JSON.stringify(nodeRegistration.pick(join));
    if (ledger.conflicts(join.requestId, registration)) {
      return fail(
        c,
        409,
        `request ${join.requestId} was already used with other details: a retry must resend the same body, a new join needs a new request id`,
        "requestId",
      );
    }
    const pendingJoins = memberNodes(deps.state()).filter((node) => node.status === "joining");
    if (!memberByName(deps.state(), join.name) && pendingJoins.length >= MAX_PENDING_JOINS) {
      return fail(
        c,
        429,
        `${pendingJoins.length} joins are waiting for their nodes to start, the most this cluster takes at once: retry once they finish or expire`,
      );
    }
    ledger.remember(join.requestId, registration);
    const key = `${join.requestId}\n${join.name}\n${join.wgPublicKey}`;
    let pending = joining.get(key);
    if (!pending) {
      pending = register(deps, join).finally(() => joining.delete(key));
      joining.set(key, pending);
    }
    const joined = await pending;
    return joined.ok ? c.json(joined.answer, 200) : refused(c, joined);
  });

  app.post(
    "/v1/join/confirm",
    auth,
    jsonBody,
    validJson((body) => joinConfirm.parse(body, "")),
    async (c) => {
      const confirm = c.req.valid("json");
      if (deps.raft.status().role !== "leader") return forward(c, deps, await c.req.arrayBuffer());
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
      await deps.raft.addVoter(node.id);
      deps.heartbeats.heard(node.id, deps.now());
      // A voter now, so a running node: it may take work (the watchdog does this too, should
      // this leader lose its office first).
      if (node.status === "joining") {
        const up = await deps.commit({ type: "NodeUp", id: node.id, at: deps.now() });
        if (!up.ok) return refused(c, up);
      }
      const answer: JoinConfirmResponse = {
        node: { id: node.id, name: node.name },
        raft: raftInfo(deps.raft.status()),
      };
      return c.json(answer, 200);
    },
  );

  app.post(
    "/v1/join/withdraw",
    auth,
    jsonBody,
    validJson((body) => joinWithdrawal.parse(body, "")),
    async (c) => {
      const withdrawal = c.req.valid("json");
      const { cluster } = deps.state();
      if (!cluster) return fail(c, 503, "the cluster is not initialised yet; retry shortly");
      if (deps.raft.status().role !== "leader") return forward(c, deps, await c.req.arrayBuffer());
      return withdrawJoin(c, deps, cluster.id, withdrawal);
    },
  );

  app.get("/v1/status", auth, async (c) => c.json(statusView(await consistentView(deps)), 200));

  app.get("/v1/nodes", auth, async (c) => c.json(nodesView(await consistentView(deps)), 200));

  app.route("/", createWorkloadRoutes(deps, auth));
  app.route("/", createNodeRoutes(deps, auth));
  app.route("/", createTokenRoutes(deps, auth));

  return finish(app, deps);
}

/**
 * Refuses a joiner of another major protocol version before its body is read as this version's
 * join request, whose shape another major need not share. A malformed body or version is left to
 * the validator, which names the field.
 */
function sameProtocolMajor(deps: ApiDeps): MiddlewareHandler {
  return async (c, next) => {
    const body: unknown = await c.req.json().catch(() => undefined);
    if (typeof body !== "object" || body === null || Array.isArray(body)) return next();
    const { protocol, name } = body as { protocol?: unknown; name?: unknown };
    const parsed = joinProtocol(protocol);
    if (!parsed.ok || compatibleProtocols(parsed.value, PROTOCOL_VERSION)) return next();
    return refuseJoinProtocol(c, deps, parsed.value, name) ?? next();
  };
}

/**
 * The 409 (naming the versions; logged) for a joiner whose protocol this node refuses: another
 * major, or, checked once the body is valid, one below the committed cluster protocol (it could
 * not apply what the cluster now commits). A body without a version comes from a node before
 * joins carried one (UNVERSIONED_JOIN). Undefined when the joiner's protocol is taken.
 */
function refuseJoinProtocol(
  c: Context,
  deps: ApiDeps,
  version: ProtocolVersion,
  name: unknown,
): Response | undefined {
  const cluster = clusterProtocol(deps.state());
  const refusal = protocolRefusal(version, PROTOCOL_VERSION, cluster);
  if (refusal === undefined) return undefined;
  const theirs = formatProtocol(version);
  const who = checkName(name, "name") === undefined ? `node ${name}` : "a node";
  deps.warn(`refused the join of ${who}: it ${refusal}`);
  const fix = compatibleProtocols(version, PROTOCOL_VERSION)
    ? `the joining node speaks protocol ${theirs}, below this cluster's protocol ${formatProtocol(cluster)}: join with a mill of protocol ${formatProtocol(cluster)} or later`
    : `the joining node speaks protocol ${theirs}, this cluster ${formatProtocol(PROTOCOL_VERSION)}: join with a mill of protocol ${PROTOCOL_VERSION.major}.x, the cluster's major version`;
  return fail(c, 409, fix, "protocol");
}

/**
 * Whether the joiner proved it holds the key it registers: `nodeCert` is the certificate named by
 * `nodeKey`, and its key signed the whole registration. Without this, anyone holding the token
 * could re-register a member's name with the member's public keys and a member secret of their own.
 */
function holdsNodeKey(join: JoinRequest): boolean {
  return (
    join.nodeKey !== undefined &&
    certifies(join.nodeCert, join.nodeKey) &&
    signedByNodeKey(join.nodeCert, registrationStatement(join), join.signature)
  );
}

/** Whether `certPem` is a certificate whose fingerprint is `nodeKey`. */
function certifies(certPem: string, nodeKey: string): boolean {
  try {
    return nodeKeyOf(certPem) === nodeKey;
  } catch {
    return false;
  }
}

/**
 * Takes back a registration at its joiner's request (POST /v1/join/withdraw), on the leader: only
 * the node key the record names can, and only while the record is still joining and not a voter.
 */
async function withdrawJoin(
  c: Context,
  deps: ApiDeps,
  clusterId: string,
  withdrawal: JoinWithdrawal,
): Promise<Response> {
  const node = deps.state().nodes.get(withdrawal.nodeId);
  if (!node) {
    return fail(
      c,
      404,
      `no node ${withdrawal.nodeId} is registered: there is nothing to withdraw`,
      "nodeId",
    );
  }
  const statement = withdrawalStatement(clusterId, node.id);
  if (
    node.nodeKey === undefined ||
    !certifies(withdrawal.nodeCert, node.nodeKey) ||
    !signedByNodeKey(withdrawal.nodeCert, statement, withdrawal.signature)
  ) {
    return fail(
      c,
      403,
      `the withdrawal is not signed by node ${node.id}'s key: only the node that registered can withdraw its registration`,
      "signature",
    );
  }
  const answer = (withdrawn: boolean) => {
    const body: JoinWithdrawResponse = { node: { id: node.id, name: node.name }, withdrawn };
    return c.json(body, 200);
  };
  if (node.status === "left") return answer(false);
  if (node.status !== "joining") return notJoining(c, node, node.status);
  if (deps.raft.status().membership.voters.includes(node.id)) return notJoining(c, node, "a voter");
  // Decided again in Raft's membership queue, after any promotion already running: a learner
  // leaves the configuration in the same entry, a node promoted meanwhile stays.
  const removed = await deps.removeJoin({ type: "NodeRemove", id: node.id, at: deps.now() });
  if (removed && !removed.ok) return refused(c, removed);
  return removed ? answer(true) : notJoining(c, node, "a voter");
}

/** 409 for a withdrawal of a node that is `what` (ready, down, a voter): a member, not a join. */
function notJoining(c: Context, node: NodeRecord, what: string): Response {
  return fail(
    c,
    409,
    `node ${node.id} (${node.name}) is ${what}, not a join in progress: a member leaves with mill leave, or is removed with mill remove`,
    "nodeId",
  );
}

/** The body of POST /v1/join/confirm (JoinConfirmRequest). */
const joinConfirm: Schema<JoinConfirmRequest> = object({
  requestId: leaf<string>(checkRequestId),
  nodeId: leaf<NodeId>(checkNodeId),
  wgPublicKey: leaf<string>(checkPublicKey),
});

/**
 * Another member already serves on the address and ports a join asks for: two records for one
 * address. (Two nodes on one address with other ports are fine.)
 */
function addressTaken(deps: ApiDeps, join: JoinRequest): Outcome<never> | undefined {
  const ports = [join.apiPort, join.raftPort];
  const owner = memberNodes(deps.state()).find(
    (node) =>
      node.name !== join.name &&
      node.advertise === join.advertise &&
      (ports.includes(node.apiPort) || ports.includes(node.raftPort)),
  );
  if (!owner) return undefined;
  return {
    ok: false,
    code: "conflict",
    field: "advertise",
    error: `${join.advertise} port ${join.apiPort} is node ${owner.id} (${owner.name})'s address: pass this host's own --advertise, or another --port`,
  };
}

/**
 * Registers on the leader. An identical registration already applied is answered without a
 * proposal; anything else goes through the log, where the FSM decides (new, rejoin, conflict).
 */
async function register(deps: ApiDeps, join: JoinRequest): Promise<Outcome<JoinResponse>> {
  const registration = nodeRegistration.pick(join);
  const existing = memberByName(deps.state(), join.name);
  let node: NodeRecord;
  if (
    existing &&
    JSON.stringify(nodeRegistration.pick(existing)) === JSON.stringify(registration)
  ) {
    node = existing;
  } else {
    const clash = registrationConflict(deps.state(), registration) ?? addressTaken(deps, join);
    if (clash && !clash.ok) return clash;
    const result = await deps.commit({
      type: "NodeRegister",
      ...registration,
      at: deps.now(),
      joining: true,
    });
    if (!result.ok) return result;
    node = result.node!;
  }
  const state = deps.state();
  const cluster = state.cluster!;
  return {
    ok: true,
    answer: {
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
      protocol: PROTOCOL_VERSION,
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
