/**
 * The door in front of both APIs: counts every 401 against the source that earned it, and while
 * a source is blocked answers its failures with 429 and Retry-After instead.
 * The credential is checked first: every request reaches the app, which authenticates it before
 * it does anything else, so a valid token or member secret is never refused because its source
 * address is blocked. Nodes and clients behind one address (127.0.0.1, a NAT) keep working while
 * an attacker there fails: only the failures are slowed. Refusing before the check would not stop
 * guessing anyway: a 160-bit secret is not guessed, and the answer to a right guess must be 200.
 * Owns: applying AuthBackoff (ratelimit.ts) to requests and its one log line per window.
 * Must not touch: authentication itself (the apps answer 401), sockets (the platform adapter
 * reports the source address).
 */

import type { AuthBackoff } from "./ratelimit.ts";
import type { ErrorBody } from "./wire.ts";

export type Handler = (request: Request) => Response | Promise<Response>;

export interface GuardOptions {
  readonly backoff: AuthBackoff;
  readonly now: () => number;
  /** Receives one line per blocked source and window; it never contains a credential. */
  readonly warn: (message: string) => void;
}

export type GuardedHandler = (request: Request, remoteAddress: string) => Promise<Response>;

export function guardAuthFailures(handler: Handler, options: GuardOptions): GuardedHandler {
  const { backoff, now, warn } = options;
  return async (request, remoteAddress) => {
    const response = await handler(request);
    if (response.status !== 401) return response;
    const admission = backoff.admit(remoteAddress, now());
    const outcome = backoff.failed(remoteAddress, now());
    if (outcome.log) {
      warn(
        `${outcome.failures} failed authentications from ${remoteAddress}: refusing its failures for ${Math.ceil(outcome.blockMs / 1000)} s (${new URL(request.url).pathname})`,
      );
    }
    if (admission.allowed) return response;
    await response.body?.cancel();
    const seconds = Math.ceil(admission.retryAfterMs / 1000);
    const body: ErrorBody = {
      error: `too many failed authentications from ${remoteAddress}: retry in ${seconds} s with the right token`,
    };
    return new Response(JSON.stringify(body), {
      status: 429,
      headers: { "content-type": "application/json", "retry-after": String(seconds) },
    });
  };
}
