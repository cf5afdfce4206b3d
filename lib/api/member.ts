/**
 * Who may call the internal API: a current member proving its own secret.
 * Owns: member authentication and the Hono env that carries the member's id to the routes.
 * Must not touch: the routes themselves (internal.ts, token.ts), sockets.
 *
 * Member authentication has two parts: the caller's TLS client certificate must be the node key
 * registered for the id it claims (so only the node holding that key can call as it), and its
 * member secret must match. Each joiner generates a random member secret (at least 128 bits, kept
 * 0600 in its data dir) and sends only its hashSecret() digest in POST /v1/join; the digest is
 * committed in its NodeRecord, so every node can verify every member without a shared key and a
 * leader change needs no hand-over. Requests carry `x-mill-node: <id>` and
 * `Authorization: Bearer <member secret>`, compared in constant time against that digest. The
 * secret crosses the network only inside WireGuard (or, with `--mesh none`, on the TLS public
 * port if the node mounts this app there). A departed node's secret stops working with its
 * NodeRemove; the join token is never accepted here, so a leaked member secret cannot join nodes.
 * Members send their protocol version (PROTOCOL_HEADER; none means the baseline 1.0); another
 * major version is refused (400, naming both), a minor below the committed cluster protocol with
 * 426 (the member must run a newer mill), each logged once a minute per member, since such a
 * member calls at every heartbeat.
 */

import type { MiddlewareHandler } from "hono";
import { clusterProtocol } from "../cluster/protocol-gate.ts";
import { fingerprintOfDer } from "../identity/fingerprint.ts";
import { bearerMatches } from "../identity/token.ts";
import { LogThrottle } from "../raft/transport/admission.ts";
import {
  BASELINE_PROTOCOL,
  compatibleProtocols,
  formatProtocol,
  PROTOCOL_HEADER,
  PROTOCOL_VERSION,
  parseProtocol,
  protocolRefusal,
} from "../shared/protocol.ts";
import type { ApiDeps } from "./deps.ts";
import { fail } from "./http.ts";
import { MEMBER_HEADER } from "./wire.ts";

/** The certificate the caller showed in its TLS handshake travels in the app's env. */
export type MemberEnv = {
  Bindings: { clientCertificate?: Uint8Array };
  Variables: { member: number };
};

export function requireMember(deps: ApiDeps): MiddlewareHandler<MemberEnv> {
  // The Node adapter hands over one certificate object per TLS connection, so a kept-alive
  // member's calls hash it once. Only the hashing is remembered: every call is checked against
  // the current records, so a removed member is refused on its very next call.
  const fingerprints = new WeakMap<Uint8Array, string>();
  /** A member of another major calls at every heartbeat: one line a minute each. */
  const protocolRefusals = new LogThrottle();
  const fingerprintOf = (certificate: Uint8Array) => {
    let fingerprint = fingerprints.get(certificate);
    if (fingerprint === undefined) {
      fingerprint = fingerprintOfDer(certificate);
      fingerprints.set(certificate, fingerprint);
    }
    return fingerprint;
  };
  return async (c, next) => {
    const id = Number(c.req.header(MEMBER_HEADER));
    const node = Number.isSafeInteger(id) ? deps.state().nodes.get(id) : undefined;
    // Check a hash even for an unknown id, so timing does not reveal which ids exist.
    const hash = node?.memberSecretHash ?? "0".repeat(64);
    if (!bearerMatches(c.req.header("authorization"), hash) || !node) {
      return fail(c, 401, "unknown member or wrong member secret");
    }
    const shown = c.env?.clientCertificate;
    if (node.nodeKey === undefined || !shown || fingerprintOf(shown) !== node.nodeKey) {
      return fail(c, 401, `the caller did not show node ${id}'s key in its TLS handshake`);
    }
    if (node.status === "left") {
      return fail(c, 403, `node ${id} has left the cluster: run mill join to come back`);
    }
    // A member before the header spoke the baseline.
    const theirs = parseProtocol(c.req.header(PROTOCOL_HEADER)) ?? BASELINE_PROTOCOL;
    const cluster = clusterProtocol(deps.state());
    const refusal = protocolRefusal(theirs, PROTOCOL_VERSION, cluster);
    if (refusal) {
      if (protocolRefusals.allow(String(id), deps.now())) {
        deps.warn(`internal API: refusing the calls of node ${id}: it ${refusal}`);
      }
      return compatibleProtocols(theirs, PROTOCOL_VERSION)
        ? fail(
            c,
            426,
            `node ${id} ${refusal}: run a mill of protocol ${formatProtocol(cluster)} or later on it`,
          )
        : fail(c, 400, `node ${id} ${refusal}: run the same major version of mill on every node`);
    }
    c.set("member", id);
    await next();
  };
}
