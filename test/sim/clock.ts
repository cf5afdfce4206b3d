/**
 * Virtual time for the simulation: a discrete-event scheduler in virtual milliseconds that the
 * real Raft driver runs on through the Clock interface. It plays Node's event loop for each
 * node: every event due now (timers, message deliveries, disk completions) runs first, then the
 * "soon" callbacks (setImmediate's check phase), and after each callback the microtasks drain
 * (the driver's awaits resume) before that node's next callback. Each event belongs to a lane
 * (a node): events of different lanes due at one instant run side by side and share one drain,
 * as separate processes would. Nothing here reads a real clock or sets a real timer.
 * Owns: the current time, the event queue, event stamps. Must not touch: Date, real timers.
 */

import type { Cancel, Clock } from "../../lib/shared/clock.ts";

/** Whoever scheduled an event: a node's incarnation. A crashed owner's events never run. */
export interface Owner {
  alive: boolean;
}

const ALWAYS: Owner = { alive: true };
const NONE_DUE: readonly SimEvent[] = [];

interface SimEvent {
  readonly at: number;
  readonly seq: number;
  /** Events of one lane (one node) run one at a time, with the microtasks drained between. */
  readonly lane: number;
  readonly owner: Owner;
  readonly fn: () => void;
  cancelled: boolean;
}

/**
 * Resolves once every pending microtask has run, however deep the chain: Node runs the nextTick
 * queue only after the microtask queue is empty (and five times cheaper than setImmediate).
 */
const drainMicrotasks = () => new Promise<void>((resolve) => process.nextTick(resolve));

export class SimScheduler {
  private time = 0;
  private seq = 0;
  private stamps = 0;
  /** A binary min-heap on (at, seq). */
  private readonly heap: SimEvent[] = [];
  private immediates: SimEvent[] = [];

  /** Called after every event and its microtasks; throwing stops the run. */
  constructor(private readonly afterEvent: () => void = () => {}) {}

  /** The current virtual time in ms. */
  get now(): number {
    return this.time;
  }

  /** A strictly increasing stamp, finer than time: orders calls and returns in a client history. */
  stamp(): number {
    return ++this.stamps;
  }

  /** Runs `fn` at virtual time `at` (now if in the past) in `lane`, unless `owner` is dead by then. */
  at(at: number, lane: number, fn: () => void, owner: Owner = ALWAYS): Cancel {
    const event: SimEvent = {
      at: Math.max(at, this.time),
      seq: ++this.seq,
      lane,
      owner,
      fn,
      cancelled: false,
    };
    this.push(event);
    return () => {
      event.cancelled = true;
    };
  }

  /** A Clock for one node incarnation (in the node's lane): its timers die with it. */
  clock(owner: Owner, lane: number): Clock {
    return {
      now: () => this.time,
      after: (ms, fn) => this.at(this.time + ms, lane, fn, owner),
      every: (ms, fn) => {
        let cancel: Cancel = () => {};
        const arm = () => {
          cancel = this.at(
            this.time + ms,
            lane,
            () => {
              arm();
              fn();
            },
            owner,
          );
        };
        arm();
        return () => cancel();
      },
      soon: (fn) => {
        this.immediates.push({
          at: this.time,
          seq: ++this.seq,
          lane,
          owner,
          fn,
          cancelled: false,
        });
      },
    };
  }

  /** Runs every event due up to `until`, in order, then leaves the time at `until`. */
  async runTo(until: number): Promise<void> {
    for (;;) {
      const due = this.takeDue();
      if (due.length > 0) {
        await this.run(due);
        continue;
      }
      if (this.immediates.length > 0) {
        const [batch, later] = onePerLane(this.immediates);
        this.immediates = later;
        await this.run(batch);
        continue;
      }
      const next = this.heap[0];
      if (!next || next.at > until) break;
      this.time = next.at;
    }
    this.time = Math.max(this.time, until);
  }

  /** The events due now, at most one per lane (the others stay queued, in order). */
  private takeDue(): readonly SimEvent[] {
    if (!(this.heap[0] && this.heap[0].at <= this.time)) return NONE_DUE;
    const due: SimEvent[] = [];
    while (this.heap[0] && this.heap[0].at <= this.time) due.push(this.pop()!);
    if (due.length === 1) return due;
    const [batch, later] = onePerLane(due);
    for (const event of later) this.push(event);
    return batch;
  }

  private async run(batch: readonly SimEvent[]): Promise<void> {
    for (const event of batch) if (!event.cancelled && event.owner.alive) event.fn();
    await drainMicrotasks();
    this.afterEvent();
  }

  private push(event: SimEvent): void {
    const heap = this.heap;
    heap.push(event);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  private pop(): SimEvent | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length > 0 && last) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < heap.length && before(heap[left]!, heap[smallest]!)) smallest = left;
        if (right < heap.length && before(heap[right]!, heap[smallest]!)) smallest = right;
        if (smallest === i) break;
        [heap[i], heap[smallest]] = [heap[smallest]!, heap[i]!];
        i = smallest;
      }
    }
    return top;
  }
}

/** Splits events (in order) into the first of each lane and the rest. */
function onePerLane(events: readonly SimEvent[]): [SimEvent[], SimEvent[]] {
  const lanes = new Set<number>();
  const first: SimEvent[] = [];
  const rest: SimEvent[] = [];
  for (const event of events) {
    if (lanes.has(event.lane)) rest.push(event);
    else {
      lanes.add(event.lane);
      first.push(event);
    }
  }
  return [first, rest];
}

function before(a: SimEvent, b: SimEvent): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
