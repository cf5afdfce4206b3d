/**
 * Which inbound Raft connections a node takes, and how often it says so in its log. Pure
 * bookkeeping: counts by source address and pool, with no sockets and no clock of its own.
 * Owns: the connection caps and the log throttle. Must not touch: sockets, timers, frames.
 *
 * Only connections that have not proved who they are count against the caps: an attacker who
 * shares an address with a member (a local user on that node) can hold at most `perSource`
 * handshakes open, each for at most the handshake timeout, and never displaces the member's
 * authenticated connections. Connections from a privileged source port (below 1024, which only
 * root binds; lib/shared/reserved-ports.ts) are counted in a pool of their own, with the same
 * limits: an unprivileged user who fills its address's slots leaves the member's agent, which
 * dials from a reserved port, its own. The port decides the pool only, never who the peer is.
 */

export interface AdmissionLimits {
  /** Unauthenticated connections one source address may hold open at once. */
  readonly perSource: number;
  /** Unauthenticated connections from all sources together. */
  readonly total: number;
}

export const DEFAULT_ADMISSION_LIMITS: AdmissionLimits = { perSource: 16, total: 128 };

export type Admitted = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/** Which pool a connection waits in: from a privileged source port (below 1024) or not. */
export type Pool = "privileged" | "unprivileged";

const POOL_NAMES: Record<Pool, string> = {
  privileged: "from ports below 1024",
  unprivileged: "from ports 1024 and above",
};

/** One pool's counts: by source address and in total. */
class Counts {
  readonly bySource = new Map<string, number>();
  total = 0;
}

export class Admission {
  private readonly pools: Record<Pool, Counts> = {
    privileged: new Counts(),
    unprivileged: new Counts(),
  };

  constructor(private readonly limits: AdmissionLimits = DEFAULT_ADMISSION_LIMITS) {}

  /** Takes a slot in `pool` for a new connection from `source`, or says why there is none. */
  admit(source: string, pool: Pool): Admitted {
    const counts = this.pools[pool];
    const fromSource = counts.bySource.get(source) ?? 0;
    if (fromSource >= this.limits.perSource) {
      return {
        ok: false,
        reason: `${source} already has ${fromSource} connections that have not authenticated (limit ${this.limits.perSource} ${POOL_NAMES[pool]})`,
      };
    }
    if (counts.total >= this.limits.total) {
      return {
        ok: false,
        reason: `${counts.total} connections have not authenticated yet (limit ${this.limits.total} ${POOL_NAMES[pool]})`,
      };
    }
    counts.bySource.set(source, fromSource + 1);
    counts.total++;
    return { ok: true };
  }

  /** Gives back the slot `admit` took (the connection authenticated or closed). */
  release(source: string, pool: Pool): void {
    const counts = this.pools[pool];
    const fromSource = counts.bySource.get(source);
    if (fromSource === undefined) return;
    if (fromSource <= 1) counts.bySource.delete(source);
    else counts.bySource.set(source, fromSource - 1);
    counts.total--;
  }

  /** Slots held in `pool`: by `source`, or by everyone. */
  held(pool: Pool, source?: string): number {
    const counts = this.pools[pool];
    return source === undefined ? counts.total : (counts.bySource.get(source) ?? 0);
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
