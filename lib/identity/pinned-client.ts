/**
 * HTTPS requests to a Mill node whose certificate must match a pinned fingerprint.
 * Owns: the pin check on every TLS connection. Must not touch: what is requested or why.
 * The check runs in the socket's `secureConnect` handler, before the TLS layer flushes the
 * request, so on a mismatch the socket is destroyed and not one byte of the request (and so
 * not the Authorization header) reaches the impostor. A check in the response callback would
 * be too late. CA and hostname checks are off: the pin is the whole of server authentication.
 */

import type { IncomingHttpHeaders } from "node:http";
import { Agent, type AgentOptions, type RequestOptions, request } from "node:https";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { concatBytes } from "../shared/bytes.ts";
import { fingerprintOfDer } from "./fingerprint.ts";

export class PinMismatchError extends Error {
  override name = "PinMismatchError";
  constructor(
    readonly expected: string,
    readonly actual: string,
  ) {
    super(
      `server identity does not match the token (possible man-in-the-middle): expected ${expected}, got ${actual}`,
    );
  }
}

/** Destroys `socket` with a PinMismatchError unless its peer certificate has `fingerprint`. */
function enforcePin(socket: TLSSocket, fingerprint: string): void {
  const certificate = socket.getPeerCertificate();
  const actual = certificate?.raw ? fingerprintOfDer(certificate.raw) : "no certificate";
  if (actual !== fingerprint) socket.destroy(new PinMismatchError(fingerprint, actual));
}

/**
 * How long a kept-alive socket may sit idle in the pool. Node lowers it to one second under the
 * server's `Keep-Alive: timeout=N` hint (5 s for a Node server), but only when the agent has a
 * timeout of its own; without one, a request could go out on a socket the server is closing.
 */
const IDLE_SOCKET_MS = 4_000;

/**
 * An https.Agent bound to one pin: every connection it opens is checked before use, so sockets
 * it keeps alive for later requests were checked too. TLS sessions are never resumed: a resumed
 * session carries no peer certificate, so its pin could not be checked and the first connection
 * after the server closed an idle one would be refused.
 */
export class PinnedAgent extends Agent {
  constructor(
    readonly fingerprint: string,
    options: AgentOptions = {},
  ) {
    super({ ...options, rejectUnauthorized: false, maxCachedSessions: 0 });
  }

  override createConnection(
    options: RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const socket = super.createConnection(options, callback) as TLSSocket;
    socket.once("secureConnect", () => enforcePin(socket, this.fingerprint));
    return socket;
  }
}

/** A keep-alive agent for repeated calls to nodes sharing one identity; close it with destroy(). */
/** A PEM certificate and key this client shows when the server asks (a node's own). */
export interface ClientCertificate {
  readonly certPem: string;
  readonly keyPem: string;
}

export function createPinnedAgent(
  fingerprint: string,
  clientCertificate?: ClientCertificate,
): PinnedAgent {
  return new PinnedAgent(fingerprint, {
    keepAlive: true,
    timeout: IDLE_SOCKET_MS,
    ...(clientCertificate
      ? { cert: clientCertificate.certPem, key: clientCertificate.keyPem }
      : {}),
  });
}

export interface PinnedRequestOptions {
  readonly host: string;
  readonly port: number;
  readonly fingerprint: string;
  readonly method?: string;
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Uint8Array | string;
  /** Whole-request deadline, connection included. */
  readonly timeoutMs?: number;
  /** From createPinnedAgent, for connection reuse; its pin must equal `fingerprint`. */
  readonly agent?: PinnedAgent;
}

export interface PinnedResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Uint8Array;
}

const DEFAULT_TIMEOUT_MS = 10_000;

export function pinnedRequest(options: PinnedRequestOptions): Promise<PinnedResponse> {
  const { host, port, fingerprint } = options;
  if (options.agent && options.agent.fingerprint !== fingerprint) {
    return Promise.reject(
      new Error(
        `pinnedRequest: the agent is pinned to ${options.agent.fingerprint}, not to ${fingerprint}`,
      ),
    );
  }
  const agent = options.agent ?? new PinnedAgent(fingerprint);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const target = `https://${host.includes(":") ? `[${host}]` : host}:${port}${options.path}`;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port,
        method: options.method ?? "GET",
        path: options.path,
        headers: options.headers,
        agent,
        rejectUnauthorized: false,
      },
      (res) => {
        const chunks: Uint8Array[] = [];
        res.on("data", (chunk: Uint8Array) => chunks.push(chunk));
        res.on("error", fail);
        res.on("end", () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: concatBytes(chunks) });
        });
      },
    );
    const timer = setTimeout(
      () => req.destroy(new Error(`no complete reply within ${timeoutMs} ms`)),
      timeoutMs,
    );
    function fail(error: Error): void {
      clearTimeout(timer);
      if (error instanceof PinMismatchError) reject(error);
      else reject(new Error(`${target}: ${error.message}`, { cause: error }));
    }
    req.on("error", fail);
    req.end(options.body);
  });
}
