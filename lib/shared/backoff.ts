/**
 * Restart back-off for a supervised process: the waits before restart 1, 2, 3 ... (the last one
 * repeats), starting over once a process ran long enough to count as healthy. The workload
 * supervisor and the WireGuard supervisor both restart this way, each with its own delays.
 * Owns: that policy and its counter. Must not touch: processes, timers, anything outside lib/shared.
 */

export interface RestartPolicy {
  /** Waits before restart number 1, 2, 3 ...; the last one repeats. */
  readonly delaysMs: readonly number[];
  /** A process that ran at least this long before it ended restarts after the first wait again. */
  readonly stableMs: number;
}

/** `initialMs`, doubled per restart, capped at `maxMs`: the delays of a doubling back-off. */
export function doublingDelays(initialMs: number, maxMs: number): number[] {
  const delays = [initialMs];
  while (delays.at(-1)! < maxMs) delays.push(Math.min(delays.at(-1)! * 2, maxMs));
  return delays;
}

/** The back-off of one supervised process. */
export class RestartBackoff {
  /** Restarts since the process last ran stably. */
  #failures = 0;

  constructor(readonly policy: RestartPolicy) {}

  /** The wait before restarting a process that ran for `uptimeMs` (0 when it never started). */
  next(uptimeMs: number): number {
    const { delaysMs, stableMs } = this.policy;
    if (uptimeMs >= stableMs) this.#failures = 0;
    const delay = delaysMs[Math.min(this.#failures, delaysMs.length - 1)]!;
    this.#failures++;
    return delay;
  }
}
