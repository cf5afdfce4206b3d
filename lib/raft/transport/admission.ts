/**
 * Which inbound Raft connections a node takes, and how often it says so in its log. Pure
 * bookkeeping: counts by source address, with no sockets and no clock of its own.
 * Owns: the connection caps and the log throttle. Must not touch: sockets, timers, frames.
 *
 * Only connections that have not proved who they are count against the caps: an attacker who
 * shares an address with a member (a local user on that node) can hold at most `perSource`
 * handshakes open, each for at most the handshake timeout, and never displaces the member's
 * authenticated connections.
 */

export interface AdmissionLimits {
  /** Unauthenticated connections one source address may hold open at once. */
  readonly perSource: number;
  /** Unauthenticated connections from all sources together. */
  readonly total: number;
}

export const DEFAULT_ADMISSION_LIMITS: AdmissionLimits = { perSource: 16, total: 128 };

export type Admitted = { readonly ok: true } | { readonly ok: false; readonly reason: string };

export class Admission {
  private readonly bySource = new Map<string, number>();
  private total = 0;

  constructor(private readonly limits: AdmissionLimits = DEFAULT_ADMISSION_LIMITS) {}

  /** Takes a slot for a new connection from `source`, or says why there is none. */
  admit(source: string): Admitted {
    const fromSource = this.bySource.get(source) ?? 0;
    if (fromSource >= this.limits.perSource) {
      return {
        ok: false,
        reason: `${source} already has ${fromSource} connections that have not authenticated (limit ${this.limits.perSource})`,
      };
    }
    if (this.total >= this.limits.total) {
      return {
        ok: false,
        reason: `${this.total} connections have not authenticated yet (limit ${this.limits.total})`,
      };
    }
    this.bySource.set(source, fromSource + 1);
    this.total++;
    return { ok: true };
  }

  /** Gives back the slot `admit` took for `source` (the connection authenticated or closed). */
  release(source: string): void {
    const fromSource = this.bySource.get(source);
    if (fromSource === undefined) return;
    if (fromSource <= 1) this.bySource.delete(source);
    else this.bySource.set(source, fromSource - 1);
    this.total--;
  }

  /** Slots held: by `source`, or by everyone. */
  held(source?: string): number {
    return source === undefined ? this.total : (this.bySource.get(source) ?? 0);
  }
}

/**
 * One log line per key (a source address) and window, so a flood of refused connections costs a
 * line a minute, not a line a connection. Remembers at most `maxKeys` keys, forgetting the
 * oldest first.
 */
export class LogThrottle {
  private readonly lastAt = new Map<string, number>();

  constructor(
    private readonly windowMs = 60_000,
    private readonly maxKeys = 1_000,
  ) {}

  /** Whether a line about `key` may be logged at `now`; if so, the window starts again. */
  allow(key: string, now: number): boolean {
    const last = this.lastAt.get(key);
    if (last !== undefined && now - last < this.windowMs) return false;
    this.lastAt.delete(key);
    this.lastAt.set(key, now);
    if (this.lastAt.size > this.maxKeys) {
      this.lastAt.delete(this.lastAt.keys().next().value as string);
    }
    return true;
  }
}
