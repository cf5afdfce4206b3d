/**
 * Forwarding a public API request that only the leader can answer: the same method, path, headers
 * and body to the leader's public port over pinned TLS, its answer passed back.
 * Owns: that relay and which headers it passes. Must not touch: which requests are forwarded
 * (lib/api/routing.ts), who leads (Raft).
 */
import type { NodeRecord } from "../cluster/state.ts";
import { type PinnedAgent, pinnedRequest } from "../identity/pinned-client.ts";

const HOP_BY_HOP = new Set([
  "host",
  "connection",
  "keep-alive",
  "content-length",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "proxy-authorization",
  "proxy-connection",
]);

export interface LeaderForwardOptions {
  /** The leader's record; undefined while there is none. */
  leader(): NodeRecord | undefined;
  /** Pinned to the cluster's TLS identity, which every node serves (see acceptedPins). */
  readonly pinned: PinnedAgent;
  readonly timeoutMs: number;
}

/** A forwardToLeader for ApiDeps: rejects when there is no leader or it cannot be reached. */
export function leaderForwarder(
  options: LeaderForwardOptions,
): (request: Request) => Promise<Response> {
  const { pinned, timeoutMs } = options;
  return async (request) => {
    const leader = options.leader();
    if (!leader) throw new Error("no leader");
    const url = new URL(request.url);
    const headers: Record<string, string> = {};
    // Hop-by-hop headers describe the client's connection, not this one: a forwarded
    // "connection: close" would have the leader close a socket the keep-alive agent reuses.
    request.headers.forEach((value, key) => {
      if (!HOP_BY_HOP.has(key)) headers[key] = value;
    });
    const reply = await pinnedRequest({
      host: leader.advertise,
      port: leader.apiPort,
      agent: pinned,
      method: request.method,
      path: url.pathname + url.search,
      headers,
      body: new Uint8Array(await request.arrayBuffer()),
      timeoutMs,
    });
    const contentType = reply.headers["content-type"];
    // A copy: Response wants bytes backed by a plain ArrayBuffer (Deno checks it).
    return new Response(reply.status === 204 ? null : reply.body.slice(), {
      status: reply.status,
      headers: typeof contentType === "string" ? { "content-type": contentType } : {},
    });
  };
}
