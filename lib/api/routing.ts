/**
 * How a public request is admitted and where it is answered: the cluster token check, handing a
 * write to the leader once, and reads of the committed state after a read barrier.
 * Owns: those three steps, shared by every public route. Must not touch: the routes' decisions.
 */

import type { Context, MiddlewareHandler } from "hono";
import type { ViewInput } from "../cluster/views.ts";
import { fingerprintOfPem } from "../identity/fingerprint.ts";
import { bearerCredential, secretMatches } from "../identity/token.ts";
import { NONE, NotLeaderError } from "../raft/types.ts";
import { deadline } from "../shared/deadline.ts";
import { errorMessage } from "../shared/errors.ts";
import type { ApiDeps } from "./deps.ts";
import { fail } from "./http.ts";
import { FORWARDED_HEADER } from "./wire.ts";

/**
 * Admits a request that carries the cluster token: its secret alone (`Bearer <secret>`) or the
 * whole token as `mill init` printed it, whose fingerprint must then name this cluster's
 * certificate: the committed one (a rotation commits it) or, before any rotation, the one served.
 */
export function requireToken(deps: ApiDeps): MiddlewareHandler {
  let pinned = { certPem: "", fingerprint: "" };
  const ownFingerprint = () => {
    const { certPem } = deps.tlsIdentity();
    if (pinned.certPem !== certPem) pinned = { certPem, fingerprint: fingerprintOfPem(certPem) };
    return pinned.fingerprint;
  };
  return async (c, next) => {
    const { tokenHash, tlsFingerprint } = deps.state();
    if (tokenHash === "") {
      return fail(c, 503, "this node has no cluster state yet; retry shortly or ask another node");
    }
    const credential = bearerCredential(c.req.header("authorization"));
    if (
      credential?.fingerprint !== undefined &&
      credential.fingerprint !== (tlsFingerprint ?? ownFingerprint())
    ) {
      return fail(
        c,
        401,
        "this token is for another cluster: its fingerprint does not match this cluster's certificate; pass this cluster's token",
      );
    }
    // The secret is hashed even without a credential, so the reply time does not tell them apart.
    if (!secretMatches(credential?.secret ?? "", tokenHash) || credential === undefined) {
      return fail(
        c,
        401,
        "missing or wrong token: pass the cluster's token (--token or MILL_TOKEN)",
      );
    }
    await next();
  };
}

/**
 * Hands the request to the leader, once: a forwarded request reaching a non-leader is a 503, and
 * a leader this node cannot reach is a 502 naming both nodes and the underlying error.
 */
export async function forward(c: Context, deps: ApiDeps, body: ArrayBuffer): Promise<Response> {
  if (c.req.header(FORWARDED_HEADER) !== undefined) {
    return fail(c, 503, "leadership is changing: retry in a moment");
  }
  const { leader } = deps.raft.status();
  if (leader === NONE) throw new NotLeaderError(NONE);
  const target = deps.state().nodes.get(leader);
  if (!target) return fail(c, 503, `the leader (node ${leader}) has no address yet; retry shortly`);
  const headers = new Headers(c.req.raw.headers);
  headers.set(FORWARDED_HEADER, "1");
  try {
    return await deps.forwardToLeader(
      new Request(c.req.url, { method: c.req.method, headers, body }),
    );
  } catch (error) {
    const self = deps.state().nodes.get(deps.raft.status().id)?.name ?? "this node";
    return fail(
      c,
      502,
      `${self} cannot reach the leader ${target.name} at ${target.advertise}:${target.apiPort}: ${reasonOf(error)}`,
    );
  }
}

/** The underlying error, without the URL prefix pinnedRequest puts before it. */
function reasonOf(error: unknown): string {
  return errorMessage(error instanceof Error && error.cause instanceof Error ? error.cause : error);
}

/**
 * A view of the state after a read barrier, so every node answers with what was committed. The
 * barrier failing or timing out throws, which the app answers with 503.
 */
export async function consistentView(deps: ApiDeps): Promise<ViewInput> {
  await deadline(deps.raft.readBarrier(), deps.commitTimeoutMs);
  const status = deps.raft.status();
  const mesh = deps.meshPeers();
  const state = deps.state();
  return {
    state,
    raft: { leader: status.leader, term: status.term, membership: status.membership },
    now: deps.now(),
    heartbeatAge: (id) => deps.heartbeatAge(id),
    disk: (id) => deps.diskOf(id),
    ...(mesh ? { mesh: { self: status.id, peers: mesh } } : {}),
  };
}
