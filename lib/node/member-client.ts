/**
 * Calls from this node to another member's internal API, authenticated by this node's member
 * secret and its node certificate (see lib/api/member.ts), over mutual TLS: on the mesh address
 * inside WireGuard, pinned to the member's own registered node key, or with `--mesh none` on the
 * public port, pinned to the cluster's identity. A member that refuses the calls (400, 401, 403,
 * 429) is named in the log at its first refusal, with its reason, then at most once a minute
 * while it keeps refusing (RefusalLog). Its connections leave from a reserved port when `dial`
 * says so (the agent's does, lib/platform), so the member called counts them apart from a local
 * user's on this host.
 * Owns: that choice of transport, and the log of refusals. Must not touch: what the calls mean.
 */

import { type ErrorBody, MEMBER_HEADER } from "../api/wire.ts";
import type { NodeRecord } from "../cluster/state.ts";
import type { MeshMode } from "../cluster/validate.ts";
import { type ClientCertificate, PinnedAgent, pinnedRequest } from "../identity/pinned-client.ts";
import { bearerHeader } from "../identity/token.ts";
import { LogThrottle } from "../raft/transport/admission.ts";
import { formatProtocol, PROTOCOL_HEADER, PROTOCOL_VERSION } from "../shared/protocol.ts";
import type { Dial } from "../shared/reserved-ports.ts";
import { isControl } from "../workloads/commands.ts";

export interface MemberIdentity {
  readonly nodeId: number;
  readonly memberSecret: string;
  /** This node's certificate and key, shown to the member called (lib/api/member.ts). */
  readonly certificate: ClientCertificate;
  readonly mesh: MeshMode;
  /** Pinned to the cluster's TLS identity (see acceptedPins); used with `--mesh none`. */
  readonly pinned: PinnedAgent;
  /** Hears every reply, and logs the refusals among them. */
  readonly refusals: RefusalLog;
  /** Opens the TCP connections of calls on the mesh (the agent's: from a reserved port). */
  readonly dial?: Dial;
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
      ? new PinnedAgent(target.nodeKey!, certificateOptions(self.certificate), self.dial)
      : self.pinned,
    method,
    path,
    headers,
    ...(payload === undefined ? {} : { body: payload }),
    timeoutMs,
  });
  const answer = { status: reply.status, text: new TextDecoder().decode(reply.body) };
  self.refusals.heard(target, `${method} ${path.split("?")[0]}`, answer);
  return answer;
}

/**
 * What a member answers when it will not take this node's call rather than failing at it: a
 * wrong member secret or node key (401), a departed node (403), another major version or a body
 * it cannot take (400), and the back-off that follows repeated 401s (429).
 */
const REFUSALS = new Set([400, 401, 403, 429]);
/** How much of a member's reason a log line carries. */
const REASON_CHARS = 300;

/**
 * The log of refused internal-API calls: the first refusal of a kind (the member called and the
 * status) is one line at once, naming the member, the call and its reason; while they go on, one
 * more line a minute at most (LogThrottle), counting the refusals it did not log. A member that
 * refuses every heartbeat costs a line a minute, and the first refusal is never left unsaid.
 */
export class RefusalLog {
  readonly #throttle = new LogThrottle();
  readonly #unlogged = new Map<string, number>();

  constructor(
    private readonly warn: (line: string) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** One reply from `target` to `call` (e.g. `POST /v1/internal/heartbeat`). */
  heard(target: Pick<NodeRecord, "id" | "name">, call: string, reply: MemberReply): void {
    if (!REFUSALS.has(reply.status)) return;
    const key = `${target.id} ${reply.status}`;
    const unlogged = this.#unlogged.get(key) ?? 0;
    this.#unlogged.delete(key);
    if (!this.#throttle.allow(key, this.now())) {
      this.#unlogged.set(key, unlogged + 1);
      return;
    }
    const since = unlogged > 0 ? ` (and ${unlogged} more since the last such line)` : "";
    this.warn(
      `internal API: ${target.name} (node ${target.id}) refused ${call}: ${reasonOf(reply)} (HTTP ${reply.status})${since}`,
    );
  }
}

/** A refusal's reason: the `error` of its JSON body, else its text, printable and on one line. */
function reasonOf(reply: MemberReply): string {
  let reason = reply.text;
  try {
    const error = (JSON.parse(reply.text) as ErrorBody | null)?.error;
    if (typeof error === "string") reason = error;
  } catch {
    // not JSON: the text as it is
  }
  const printable = [...reason].map((character) => (isControl(character) ? " " : character));
  const line = printable.join("").trim() || "no reason given";
  return line.length > REASON_CHARS ? `${line.slice(0, REASON_CHARS)}…` : line;
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
