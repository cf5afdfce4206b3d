/**
 * A deliberately unchecked HTTPS client for attacking a test node: any method, path, headers and
 * bytes, from a chosen loopback source address. It skips certificate checks (the tests talk to
 * nodes they started); Mill's own clients pin the cluster identity instead.
 */
import { request } from "node:https";
import type { DebugStateResponse } from "../../lib/api/wire.ts";

export interface RawReply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
}

export interface RawRequest {
  readonly host: string;
  readonly port?: number;
  readonly method?: string;
  readonly path: string;
  readonly headers?: Record<string, string>;
  readonly body?: string | Uint8Array;
  /** Source address of the connection (a loopback address of the test's own /24). */
  readonly from: string;
  /** A TLS client certificate to show (PEM), as a member's node key for the internal routes. */
  readonly clientIdentity?: { readonly certPem: string; readonly keyPem: string };
}

export function rawRequest(options: RawRequest): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: options.host,
        port: options.port ?? 4400,
        method: options.method ?? "GET",
        path: options.path,
        headers: options.headers ?? {},
        localAddress: options.from,
        cert: options.clientIdentity?.certPem,
        key: options.clientIdentity?.keyPem,
        rejectUnauthorized: false,
        agent: false,
        timeout: 20_000,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () =>
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            text: Buffer.concat(chunks).toString("utf8"),
          }),
        );
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer to ${options.path}`)));
    req.on("error", reject);
    req.end(options.body);
  });
}

/** GET /v1/debug/state with a valid token. */
export async function debugState(host: string, secret: string, from: string) {
  const reply = await rawRequest({
    host,
    path: "/v1/debug/state",
    headers: { authorization: `Bearer ${secret}` },
    from,
  });
  if (reply.status !== 200) throw new Error(`debug/state: ${reply.status} ${reply.text}`);
  return JSON.parse(reply.text) as DebugStateResponse;
}

/** The secret part of a `mill_t_<secret>.<fingerprint>` token. */
export function secretOf(token: string): string {
  return token.slice("mill_t_".length).split(".")[0]!;
}
