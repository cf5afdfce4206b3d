/**
 * Calls from this node to another member's internal API, authenticated by this node's member
 * secret (see lib/api/member.ts): plain HTTP on the mesh address inside WireGuard, which already
 * encrypts and authenticates the peer, or the pinned TLS public port with `--mesh none`.
 * Owns: that choice of transport. Must not touch: what the calls mean.
 */

import { MEMBER_HEADER } from "../api/wire.ts";
import type { NodeRecord } from "../cluster/state.ts";
import type { MeshMode } from "../cluster/validate.ts";
import { type PinnedAgent, pinnedRequest } from "../identity/pinned-client.ts";
import { bearerHeader } from "../identity/token.ts";
import { formatEndpoint } from "../mesh/plan.ts";
import { formatProtocol, PROTOCOL_HEADER, PROTOCOL_VERSION } from "../shared/protocol.ts";

export interface MemberIdentity {
  readonly nodeId: number;
  readonly memberSecret: string;
  readonly mesh: MeshMode;
  /** Pinned to the cluster's TLS identity; used with `--mesh none`. */
  readonly pinned: PinnedAgent;
}

export interface MemberReply {
  readonly status: number;
  readonly text: string;
}

/** Calls `target`'s internal API (a JSON body when given); rejects when it cannot be reached. */
export async function callMember(
  self: MemberIdentity,
  target: NodeRecord,
  method: "GET" | "POST",
  path: string,
  body: unknown,
  timeoutMs: number,
): Promise<MemberReply> {
  const headers: Record<string, string> = {
    [MEMBER_HEADER]: String(self.nodeId),
    authorization: bearerHeader(self.memberSecret),
    [PROTOCOL_HEADER]: formatProtocol(PROTOCOL_VERSION),
  };
  const payload = body === undefined ? undefined : JSON.stringify(body);
  if (payload !== undefined) headers["content-type"] = "application/json";
  if (self.mesh === "wireguard") {
    const reply = await fetch(
      `http://${formatEndpoint(target.meshAddress, target.apiPort)}${path}`,
      {
        method,
        headers,
        ...(payload === undefined ? {} : { body: payload }),
        signal: AbortSignal.timeout(timeoutMs),
      },
    );
    return { status: reply.status, text: await reply.text() };
  }
  const reply = await pinnedRequest({
    host: target.advertise,
    port: target.apiPort,
    fingerprint: self.pinned.fingerprint,
    agent: self.pinned,
    method,
    path,
    headers,
    ...(payload === undefined ? {} : { body: payload }),
    timeoutMs,
  });
  return { status: reply.status, text: new TextDecoder().decode(reply.body) };
}

/** POSTs `body` as JSON to `target`'s internal API. */
export function postToMember(
  self: MemberIdentity,
  target: NodeRecord,
  path: string,
  body: unknown,
  timeoutMs: number,
): Promise<MemberReply> {
  return callMember(self, target, "POST", path, body, timeoutMs);
}
