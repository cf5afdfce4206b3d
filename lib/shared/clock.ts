/**
 * Time as code that must also run on a test's time sees it: the current time, one-shot and
 * repeating timers, and "soon" (after the I/O already waiting has been handled). The Raft driver
 * runs on real time (systemClock) and on the simulator's virtual time (test/sim); the workload
 * supervisor on real time and on its tests' fake clock. A leaf of lib/shared: imports nothing
 * from other rooms.
 * Owns: the Clock interface and its real implementation. Must not touch: what the timers do.
 */

import { setImmediate } from "node:timers";

/** Stops a timer; calling it again does nothing. */
export type Cancel = () => void;

export interface Clock {
  /** Milliseconds on a clock that never goes back. */
  now(): number;
  /** Calls `fn` once, `ms` from now. */
  after(ms: number, fn: () => void): Cancel;
  /** Calls `fn` every `ms` until cancelled. */
  every(ms: number, fn: () => void): Cancel;
  /**
   * Calls `fn` once the event loop has handled every message and request already waiting
   * (setImmediate runs after the poll phase): what lets one Ready batch them all.
   */
  soon(fn: () => void): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  after(ms, fn) {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
  every(ms, fn) {
    const timer = setInterval(fn, ms);
    return () => clearInterval(timer);
  },
  soon(fn) {
    setImmediate(fn);
  },
};
