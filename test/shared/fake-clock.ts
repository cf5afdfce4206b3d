/**
 * Time that moves only when a test moves it: timers registered through the Clock interface
 * (lib/shared/clock.ts) fire in order as `advance` passes their due time. For code that takes an
 * injected clock (the workload supervisor, the Raft transport's dialler), so a test can show that
 * something does or does not happen over a period without waiting for that period.
 */
import { setImmediate as tick } from "node:timers/promises";
import type { Clock } from "../../lib/shared/clock.ts";

export class FakeClock implements Pick<Clock, "now" | "after"> {
  time = 0;
  #next = 1;
  #timers = new Map<number, { at: number; callback: () => void }>();
  now = () => this.time;
  after = (ms: number, callback: () => void) => {
    const id = this.#next++;
    this.#timers.set(id, { at: this.time + ms, callback });
    return () => {
      this.#timers.delete(id);
    };
  };
  /** Timers set and neither fired nor cancelled. */
  get pending(): number {
    return this.#timers.size;
  }
  /** Moves time forward, firing due timers in order and letting their async work run. */
  async advance(ms: number): Promise<void> {
    const target = this.time + ms;
    for (;;) {
      await settle();
      const due = [...this.#timers]
        .filter(([, t]) => t.at <= target)
        .sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.time = due[1].at;
      due[1].callback();
    }
    this.time = target;
    await settle();
  }
}

/** Lets the promise chains and immediates that are already waiting run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await tick();
}
