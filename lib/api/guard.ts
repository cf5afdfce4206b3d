/**
 * The door in front of both APIs: refuses a source that keeps failing authentication (429 with
 * Retry-After) and counts every 401 against the source that earned it.
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
    const admission = backoff.admit(remoteAddress, now());
    if (!admission.allowed) {
      const seconds = Math.ceil(admission.retryAfterMs / 1000);
      const body: ErrorBody = {
        error: `too many failed authentications from ${remoteAddress}: retry in ${seconds} s with the right token`,
      };
      return new Response(JSON.stringify(body), {
        status: 429,
        headers: { "content-type": "application/json", "retry-after": String(seconds) },
      });
    }
    const response = await handler(request);
    if (response.status === 401) {
      const outcome = backoff.failed(remoteAddress, now());
      if (outcome.log) {
        warn(
          `${outcome.failures} failed authentications from ${remoteAddress}: refusing it for ${Math.ceil(outcome.blockMs / 1000)} s (${new URL(request.url).pathname})`,
        );
      }
    }
    return response;
  };
}
