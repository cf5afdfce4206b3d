/**
 * Virtual time for the simulation. Time is a count of ticks that only the simulation loop
 * advances; nothing in test/sim reads a real clock or sets a real timer.
 * Owns: the current tick and the order of events within it. Must not touch: Date, setTimeout.
 */

export class VirtualClock {
  private tick = 0;
  private sequence = 0;

  /** The current tick. */
  get now(): number {
    return this.tick;
  }

  advance(ticks = 1): number {
    if (!Number.isInteger(ticks) || ticks < 0) {
      throw new Error(`VirtualClock.advance needs a non-negative integer, got ${ticks}`);
    }
    this.tick += ticks;
    return this.tick;
  }

  /** A strictly increasing stamp, finer than a tick: orders calls and returns in a client history. */
  stamp(): number {
    return ++this.sequence;
  }
}
