/**
 * HTTPS requests to a Mill node whose certificate must match a pinned fingerprint.
 * Owns: the pin check on every TLS connection. Must not touch: what is requested or why.
 * The check runs in the socket's `secureConnect` handler, before the TLS layer flushes the
 * request, so on a mismatch the socket is destroyed and not one byte of the request (and so
 * not the Authorization header) reaches the impostor. A check in the response callback would
 * be too late. CA and hostname checks are off: the pin is the whole of server authentication.
 * The one exception, unauthenticatedRequest, carries no headers and serves answers that are
 * signed: there the signature is the whole of it.
 */

import type { IncomingHttpHeaders } from "node:http";
import { Agent, type AgentOptions, type RequestOptions, request } from "node:https";
import type { Duplex } from "node:stream";
import { connect, type TLSSocket } from "node:tls";
import { concatBytes } from "../shared/bytes.ts";
import type { Dial } from "../shared/reserved-ports.ts";
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

/** Destroys `socket` with a PinMismatchError unless its peer certificate has one of `pins`. */
function enforcePin(socket: TLSSocket, pins: readonly string[]): void {
  const certificate = socket.getPeerCertificate();
  const actual = certificate?.raw ? fingerprintOfDer(certificate.raw) : "no certificate";
  if (!pins.includes(actual)) socket.destroy(new PinMismatchError(pins.join(" or "), actual));
}

/**
 * How long a kept-alive socket may sit idle in the pool. Node lowers it to one second under the
 * server's `Keep-Alive: timeout=N` hint (5 s for a Node server), but only when the agent has a
 * timeout of its own; without one, a request could go out on a socket the server is closing.
 */
const IDLE_SOCKET_MS = 4_000;

/**
 * The fingerprints a server may show: one fixed pin, or a function read at every new connection
 * (a node's own agent, whose accepted identity changes when the cluster's is rotated).
 */
export type Pins = string | (() => readonly string[]);

/** How long an agent with a `dial` waits for its TCP connection. */
const DIAL_TIMEOUT_MS = 10_000;

/**
 * An https.Agent bound to its pins: every connection it opens is checked before use, so sockets
 * it keeps alive for later requests were checked too. TLS sessions are never resumed: a resumed
 * session carries no peer certificate, so its pin could not be checked and the first connection
 * after the server closed an idle one would be refused. With `dial`, its TCP connections are
 * opened by that (a node's agent: from a reserved port, lib/platform) and TLS runs over them.
 */
export class PinnedAgent extends Agent {
  readonly #pins: Pins;
  readonly #dial: Dial | undefined;

  constructor(pins: Pins, options: AgentOptions = {}, dial?: Dial) {
    super({ ...options, rejectUnauthorized: false, maxCachedSessions: 0 });
    this.#pins = pins;
    this.#dial = dial;
  }

  /** The fingerprints a server may show to this agent now. */
  pins(): readonly string[] {
    return typeof this.#pins === "string" ? [this.#pins] : this.#pins();
  }

  override createConnection(
    options: RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const dial = this.#dial;
    if (!dial) return this.#secure(options, callback);
    // The agent takes the socket from the callback when createConnection returns none.
    const target = { host: options.host ?? "localhost", port: Number(options.port) };
    dial({ ...target, timeoutMs: DIAL_TIMEOUT_MS }).then(
      (tcp) => callback?.(null, this.#secure({ ...options, socket: tcp } as RequestOptions)),
      (error: Error) => callback?.(error, undefined as unknown as Duplex),
    );
    return undefined;
  }

  #secure(
    options: RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): TLSSocket {
    const socket = super.createConnection(options, callback) as TLSSocket;
    socket.once("secureConnect", () => enforcePin(socket, this.pins()));
    return socket;
  }
}

/** A PEM certificate and key this client shows when the server asks (a node's own). */
export interface ClientCertificate {
  readonly certPem: string;
  readonly keyPem: string;
}

/**
 * A keep-alive agent for repeated calls to nodes sharing one identity; close it with destroy().
 * `dial` opens its TCP connections (PinnedAgent).
 */
export function createPinnedAgent(
  pins: Pins,
  clientCertificate?: ClientCertificate,
  dial?: Dial,
): PinnedAgent {
  return new PinnedAgent(
    pins,
    {
      keepAlive: true,
      timeout: IDLE_SOCKET_MS,
      ...(clientCertificate
        ? { cert: clientCertificate.certPem, key: clientCertificate.keyPem }
        : {}),
    },
    dial,
  );
}

export interface PinnedRequestOptions {
  readonly host: string;
  readonly port: number;
  /** The pin; may be left out when `agent` is given, whose pins then decide. */
  readonly fingerprint?: string;
  readonly method?: string;
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Uint8Array | string;
  /** Whole-request deadline, connection included. */
  readonly timeoutMs?: number;
  /** From createPinnedAgent, for connection reuse; its pins must include `fingerprint`. */
  readonly agent?: PinnedAgent;
}

export interface PinnedResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Uint8Array;
}

const DEFAULT_TIMEOUT_MS = 10_000;

export function pinnedRequest(options: PinnedRequestOptions): Promise<PinnedResponse> {
  const { fingerprint } = options;
  const pins = options.agent?.pins();
  if (pins && fingerprint !== undefined && !pins.includes(fingerprint)) {
    return Promise.reject(
      new Error(
        `pinnedRequest: the agent is pinned to ${pins.join(" or ")}, not to ${fingerprint}`,
      ),
    );
  }
  const agent =
    options.agent ?? (fingerprint === undefined ? undefined : new PinnedAgent(fingerprint));
  if (!agent) return Promise.reject(new Error("pinnedRequest: give a fingerprint or an agent"));
  return send(options, agent);
}

/** What an unauthenticated request may carry: no headers, so never a credential. */
export interface UnauthenticatedRequestOptions
  extends Omit<PinnedRequestOptions, "fingerprint" | "agent" | "headers"> {
  /** A longer reply is cut off and rejected: an unknown server must not fill this node's memory. */
  readonly maxReplyBytes: number;
}

/**
 * The one request whose server is NOT authenticated (no pin, no CA): for an answer that proves
 * itself, such as a member's signature the caller checks against a key it already trusts, when
 * the caller may no longer know the cluster's current identity. It takes no headers, so no token
 * or secret can go out on it; a body is sent as JSON. Each call opens its own connection.
 */
export function unauthenticatedRequest(
  options: UnauthenticatedRequestOptions,
): Promise<PinnedResponse> {
  const headers: Record<string, string> =
    options.body === undefined ? {} : { "content-type": "application/json" };
  return send(
    { ...options, headers },
    new Agent({ rejectUnauthorized: false }),
    options.maxReplyBytes,
  );
}

/**
 * One request over `agent`, whose connections decide how the server is authenticated; a reply
 * body longer than `maxReplyBytes` is cut off and rejected.
 */
function send(
  options: PinnedRequestOptions,
  agent: Agent,
  maxReplyBytes = Number.POSITIVE_INFINITY,
): Promise<PinnedResponse> {
  const { host, port } = options;
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
        let replyBytes = 0;
        res.on("data", (chunk: Uint8Array) => {
          replyBytes += chunk.byteLength;
          if (replyBytes > maxReplyBytes) {
            req.destroy(new Error(`the reply is longer than ${maxReplyBytes} bytes`));
          } else {
            chunks.push(chunk);
          }
        });
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

/**
 * The fingerprint of the certificate `host:port` shows in a new TLS handshake. Nothing is sent
 * over the connection; rejects when no handshake completes within `timeoutMs`.
 */
export function servedFingerprint(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, rejectUnauthorized: false });
    socket.setTimeout(timeoutMs, () =>
      socket.destroy(new Error(`no TLS handshake within ${timeoutMs} ms`)),
    );
    socket.once("secureConnect", () => {
      const certificate = socket.getPeerCertificate();
      socket.destroy();
      if (certificate?.raw) resolve(fingerprintOfDer(certificate.raw));
      else reject(new Error("the server showed no certificate"));
    });
    socket.once("error", reject);
  });
}
