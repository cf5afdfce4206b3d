/**
 * Calls from this node to another member's internal API, authenticated by this node's member
 * secret and its node certificate (see lib/api/member.ts), over mutual TLS: on the mesh address
 * inside WireGuard, pinned to the member's own registered node key, or with `--mesh none` on the
 * public port, pinned to the cluster's identity.
 * Owns: that choice of transport. Must not touch: what the calls mean.
 */

import { MEMBER_HEADER } from "../api/wire.ts";
import type { NodeRecord } from "../cluster/state.ts";
import type { MeshMode } from "../cluster/validate.ts";
import { type ClientCertificate, PinnedAgent, pinnedRequest } from "../identity/pinned-client.ts";
import { bearerHeader } from "../identity/token.ts";
import { formatProtocol, PROTOCOL_HEADER, PROTOCOL_VERSION } from "../shared/protocol.ts";

export interface MemberIdentity {
  readonly nodeId: number;
  readonly memberSecret: string;
  /** This node's certificate and key, shown to the member called (lib/api/member.ts). */
  readonly certificate: ClientCertificate;
  readonly mesh: MeshMode;
  /** Pinned to the cluster's TLS identity (see acceptedPins); used with `--mesh none`. */
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
  // Inside the mesh a member serves with its own node key; without one, with the cluster's.
  const mesh = self.mesh === "wireguard";
  if (mesh && target.nodeKey === undefined) {
    throw new Error(`node ${target.id} has no registered node key: it must join again`);
  }
  const reply = await pinnedRequest({
    host: mesh ? target.meshAddress : target.advertise,
    port: target.apiPort,
    agent: mesh
      ? new PinnedAgent(target.nodeKey!, certificateOptions(self.certificate))
      : self.pinned,
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

const certificateOptions = (certificate: ClientCertificate) => ({
  cert: certificate.certPem,
  key: certificate.keyPem,
});
