/**
 * Talking to a node's public API as a client: pinned TLS, the bearer token, JSON in and out, and
 * answers turned into one-line errors.
 * Owns: the client side of lib/api/wire.ts. Must not touch: servers, node state.
 */
import { isIPv6 } from "node:net";
import type { ErrorBody } from "../api/wire.ts";
import { PinMismatchError, type PinnedAgent, pinnedRequest } from "../identity/pinned-client.ts";
import { bearerHeader, type ParsedToken } from "../identity/token.ts";
import { formatEndpoint } from "../mesh/plan.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import { runningPid } from "./daemon.ts";

export const DEFAULT_PORT = 4400;

/** A node answered with an error status; `message` is its one-line reason. */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly status: number,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** The node could not be reached, or is not the cluster the token names. */
export class UnreachableError extends Error {
  override name = "UnreachableError";
}

/**
 * The server's certificate is not the one the token's fingerprint part names: a mistyped token,
 * or another server (possibly a man in the middle). Nothing of the request was sent.
 */
export class IdentityMismatchError extends UnreachableError {
  override name = "IdentityMismatchError";
}

/** The client asked the node in its own data dir, and that node is not running. */
export class NodeStoppedError extends UnreachableError {
  override name = "NodeStoppedError";
  constructor(
    readonly dataDir: string,
    endpoint: string,
    reason: string,
  ) {
    super(`the node in ${dataDir} is not running: cannot reach ${endpoint} (${reason})`);
  }
}

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** Parses HOST, HOST:PORT, [V6] or [V6]:PORT. */
export function parseEndpoint(text: string, defaultPort = DEFAULT_PORT): Endpoint {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  const [host, port] = bracketed
    ? [bracketed[1], bracketed[2]]
    : isIPv6(text)
      ? [text, undefined]
      : (text.split(":") as [string, string | undefined]);
  const portNumber = port === undefined ? defaultPort : Number(port);
  if (!host || !Number.isInteger(portNumber) || portNumber < 1 || portNumber > 65535) {
    throw new Error(`invalid address "${text}": expected HOST or HOST:PORT, e.g. 10.0.0.1:4400`);
  }
  return { host, port: portNumber };
}

export interface ClientOptions {
  readonly endpoint: Endpoint;
  readonly token: ParsedToken;
  readonly timeoutMs?: number;
  readonly agent?: PinnedAgent;
  /** Set when the endpoint was read from this data dir: a failure then says if its node is down. */
  readonly localDataDir?: string;
}

/** One JSON request; resolves with the parsed 2xx body, rejects with ApiError or UnreachableError. */
export async function callApi<T>(
  options: ClientOptions,
  method: "GET" | "POST" | "DELETE",
  path: string,
  body?: unknown,
): Promise<T> {
  const { host, port } = options.endpoint;
  let response: Awaited<ReturnType<typeof pinnedRequest>>;
  try {
    response = await pinnedRequest({
      host,
      port,
      fingerprint: options.token.fingerprint,
      method,
      path,
      headers: {
        authorization: bearerHeader(options.token.secret),
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      timeoutMs: options.timeoutMs ?? 30_000,
      ...(options.agent ? { agent: options.agent } : {}),
    });
  } catch (error) {
    if (error instanceof PinMismatchError) {
      throw new IdentityMismatchError(
        `the server at ${formatEndpoint(host, port)} is not the cluster the token names: its certificate's fingerprint is ${error.actual}, the token's fingerprint part is ${error.expected}`,
      );
    }
    const reason = errorMessage(error).replace(/^https:\/\/\S+: /, "");
    const endpoint = formatEndpoint(host, port);
    if (options.localDataDir !== undefined && runningPid(options.localDataDir) === undefined) {
      throw new NodeStoppedError(options.localDataDir, endpoint, reason);
    }
    throw new UnreachableError(`cannot reach ${endpoint}: ${reason}`);
  }
  const text = new TextDecoder().decode(response.body);
  if (response.status >= 200 && response.status < 300) return JSON.parse(text) as T;
  let reason = `HTTP ${response.status}`;
  let field: string | undefined;
  try {
    const parsed = JSON.parse(text) as ErrorBody;
    reason = parsed.error ?? reason;
    field = parsed.field;
  } catch {
    // not JSON: keep the status line
  }
  throw new ApiError(response.status, reason, field);
}

/**
 * Whether a failed call may still have taken effect, and a second try may get its answer: the
 * node could not be reached or its answer was lost, or it could not reach the leader (502) or
 * had none yet (503). Not a certificate that is not the cluster's, nor a stopped local node.
 */
export function outcomeUnknown(error: unknown): boolean {
  if (error instanceof IdentityMismatchError || error instanceof NodeStoppedError) return false;
  if (error instanceof UnreachableError) return true;
  return error instanceof ApiError && (error.status === 502 || error.status === 503);
}

export interface RetryPlan {
  /** Waits before the second, third... try. */
  readonly delaysMs: readonly number[];
  /** No try starts later than this after the first, so a try that timed out is not repeated. */
  readonly budgetMs: number;
}

export const IDEMPOTENT_RETRIES: RetryPlan = { delaysMs: [250, 1000, 2000], budgetMs: 10_000 };

/**
 * Runs `attempt`, and again after each failure whose outcome is unknown, as `plan` allows. Only
 * for requests the cluster answers alike however often they come (a join, keyed by its request
 * id; its confirmation; its withdrawal): a lost answer then costs a retry, not the command and
 * what its first try did. `retrying` hears of each retry before its wait.
 */
export async function retryUncertain<T>(
  attempt: () => Promise<T>,
  retrying: (error: unknown, waitMs: number) => void = () => {},
  plan: RetryPlan = IDEMPOTENT_RETRIES,
  clock: Pick<Clock, "now" | "after"> = systemClock,
): Promise<T> {
  const started = clock.now();
  for (let tries = 0; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      const wait = plan.delaysMs[tries];
      const late = wait === undefined || clock.now() + wait - started > plan.budgetMs;
      if (late || !outcomeUnknown(error)) throw error;
      retrying(error, wait);
      await new Promise<void>((resolve) => clock.after(wait, resolve));
    }
  }
}
