/**
 * Failed-authentication back-off per source: the decision of whether a source may try again, and
 * when a failure is worth a log line. Pure: the caller passes the clock, so tests are exact.
 * Owns: that bookkeeping and its bounds. Must not touch: HTTP, logging, sockets (see guard.ts).
 *
 * Rules (AUTH_BACKOFF): a source may fail `freeFailures` times; each failure beyond that blocks it
 * for `baseBlockMs` doubled per extra failure, up to `maxBlockMs`. A source is forgotten once it
 * has been quiet (no failure, no block) for `windowMs`, so a typo does not haunt a client. Only the
 * failing source is blocked; others are never slowed. IPv6 sources count per /64, which is what one
 * host usually controls. At most `maxSources` are tracked: the least recently failed is dropped
 * first, so memory stays bounded whatever an attacker spreads its attempts over.
 */

import { sourceKey } from "../shared/source-key.ts";

export interface BackoffPolicy {
  readonly freeFailures: number;
  readonly baseBlockMs: number;
  readonly maxBlockMs: number;
  readonly windowMs: number;
  readonly maxSources: number;
}

export const AUTH_BACKOFF: BackoffPolicy = {
  freeFailures: 5,
  baseBlockMs: 1_000,
  maxBlockMs: 5 * 60_000,
  windowMs: 60_000,
  maxSources: 10_000,
};

/** What the guard does with a request from a source before letting it in. */
export type AuthAdmission =
  | { readonly allowed: true }
  | { readonly allowed: false; readonly retryAfterMs: number };

/** What one failure did: the block it started (0 while failures are free), and whether to log it. */
export interface FailureOutcome {
  readonly failures: number;
  readonly blockMs: number;
  /** True at most once per window per source. */
  readonly log: boolean;
}

interface SourceRecord {
  failures: number;
  lastFailureAt: number;
  blockedUntil: number;
  loggedAt: number | undefined;
}

export class AuthBackoff {
  readonly #sources = new Map<string, SourceRecord>();

  constructor(readonly policy: BackoffPolicy = AUTH_BACKOFF) {}

  /** How many sources are tracked (for tests and memory checks). */
  get size(): number {
    return this.#sources.size;
  }

  admit(address: string, now: number): AuthAdmission {
    const record = this.#current(sourceKey(address), now);
    if (!record || now >= record.blockedUntil) return { allowed: true };
    return { allowed: false, retryAfterMs: record.blockedUntil - now };
  }

  failed(address: string, now: number): FailureOutcome {
    const key = sourceKey(address);
    const record = this.#current(key, now) ?? {
      failures: 0,
      lastFailureAt: now,
      blockedUntil: now,
      loggedAt: undefined,
    };
    record.failures += 1;
    record.lastFailureAt = now;
    const extra = record.failures - this.policy.freeFailures;
    const blockMs =
      extra > 0
        ? Math.min(this.policy.baseBlockMs * 2 ** Math.min(extra - 1, 52), this.policy.maxBlockMs)
        : 0;
    record.blockedUntil = Math.max(record.blockedUntil, now + blockMs);
    const log =
      blockMs > 0 &&
      (record.loggedAt === undefined || now - record.loggedAt >= this.policy.windowMs);
    if (log) record.loggedAt = now;
    // Re-inserting keeps the map ordered by last failure, oldest first, for eviction.
    this.#sources.delete(key);
    this.#sources.set(key, record);
    while (this.#sources.size > this.policy.maxSources) {
      this.#sources.delete(this.#sources.keys().next().value!);
    }
    return { failures: record.failures, blockMs, log };
  }

  /** The live record for `key`; a record quiet for a whole window is dropped. */
  #current(key: string, now: number): SourceRecord | undefined {
    const record = this.#sources.get(key);
    if (!record) return undefined;
    if (now - Math.max(record.lastFailureAt, record.blockedUntil) >= this.policy.windowMs) {
      this.#sources.delete(key);
      return undefined;
    }
    return record;
  }
}
