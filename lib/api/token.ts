/**
 * Token rotation and the hand-over of the current token between members, plus the read-only
 * state digest operators (and the bad-input tests) compare across nodes.
 * Owns: POST /v1/token/rotate, GET /v1/debug/state (public, cluster token) and
 * POST /v1/internal/token (internal, member secret). Must not touch: files (deps.tokens keeps
 * them), cluster rules (the FSM applies TokenRotate).
 *
 * Rotation: the leader makes a new token together with a new public TLS identity, stages both
 * on its own disk, then commits TokenRotate with the secret's hash and the new certificate's
 * fingerprint, serves the new identity and answers with the token. From that commit on every
 * node refuses the old secret (they compare against the committed hash). The Raft log only ever
 * holds the hash and the fingerprint, so each node gets the token and the identity's key from a
 * member that has them, over the internal API (member-authenticated, inside WireGuard or over
 * pinned TLS), keeps them in its data dir for local `mill status` and serves the identity;
 * staging first means the leader can hand them on even if it restarts right after the commit.
 * Until the cluster protocol has the re-keying TokenRotate (protocol-gate.ts), rotation is refused
 * with 409 naming the nodes that hold it back, and nothing is made or committed.
 */

import { createHash } from "node:crypto";
import { Hono, type MiddlewareHandler } from "hono";
import { gateRefusal, shownBy } from "../cluster/protocol-gate.ts";
import { checkSha256Hex } from "../cluster/validate.ts";
import { fingerprintOfPem } from "../identity/fingerprint.ts";
import { tokenHashOf } from "../identity/rotation.ts";
import { leaf, object } from "../shared/schema.ts";
import type { ApiDeps } from "./deps.ts";
import { fail, jsonBody, refused, validJson } from "./http.ts";
import type { MemberEnv } from "./member.ts";
import { forward } from "./routing.ts";
import type { DebugStateResponse, TokenRotateResponse, TokenShareResponse } from "./wire.ts";

export function createTokenRoutes(deps: ApiDeps, auth: MiddlewareHandler): Hono {
  const app = new Hono();

  app.post("/v1/token/rotate", auth, async (c) => {
    const { role, id } = deps.raft.status();
    if (role !== "leader") return forward(c, deps, new ArrayBuffer(0));
    // Nodes of an older protocol would keep the old identity: wait until every one speaks it.
    const shown = shownBy(id, (member) => deps.heartbeats.protocol(member));
    const behind = gateRefusal("mill token rotate", "TokenRotate", deps.state(), shown);
    if (behind) return fail(c, 409, behind, "protocol");
    const { next, proposed } = await deps.tokens.rotate((pair) =>
      deps.commit({
        type: "TokenRotate",
        tokenHash: tokenHashOf(pair.token),
        fingerprint: fingerprintOfPem(pair.identity.certPem),
      }),
    );
    if (!proposed.ok) return refused(c, proposed);
    const answer: TokenRotateResponse = { token: next.token };
    return c.json(answer, 200);
  });

  app.get("/v1/debug/state", auth, (c) => {
    const { commit, applied } = deps.raft.status();
    const stateSha256 = createHash("sha256").update(deps.stateSnapshot()).digest("hex");
    const answer: DebugStateResponse = { commit, applied, stateSha256 };
    return c.json(answer, 200);
  });

  return app;
}

export function createTokenSharing(
  deps: ApiDeps,
  member: MiddlewareHandler<MemberEnv>,
): Hono<MemberEnv> {
  const app = new Hono<MemberEnv>();

  app.post(
    "/v1/internal/token",
    member,
    jsonBody,
    validJson((body) => shareRequest.parse(body, "")),
    async (c) => {
      const { tokenHash } = c.req.valid("json");
      if (tokenHash !== deps.state().tokenHash) {
        return fail(
          c,
          409,
          "that is not the token hash this node has committed: retry once it has applied the rotation",
          "tokenHash",
        );
      }
      const held = deps.tokens.current(tokenHash);
      if (held === undefined) {
        return fail(c, 404, "this node does not hold the current token yet: ask another member");
      }
      // The identity's private key too: a member serves the public API under the one identity
      // the token pins (README, Security).
      const answer: TokenShareResponse = { token: held.token, tls: held.identity };
      return c.json(answer, 200);
    },
  );

  return app;
}

/** The body of POST /v1/internal/token. */
const shareRequest = object({ tokenHash: leaf<string>(checkSha256Hex) });
