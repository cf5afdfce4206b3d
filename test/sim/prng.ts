/**
 * The simulation's only source of randomness: a seeded xoshiro128** generator, expanded from a
 * 32-bit seed with splitmix32. Every decision of a run (delays, drops, faults, client choices,
 * election timeouts) comes from here, so a seed replays a run exactly.
 * Owns: bit generation and a few helpers. Must not touch: Math.random, clocks.
 */

function splitmix32(state: number): [next: number, value: number] {
  const next = (state + 0x9e3779b9) | 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return [next, (z ^ (z >>> 16)) >>> 0];
}

export class Prng {
  private readonly s = new Uint32Array(4);

  constructor(seed: number) {
    let state = seed | 0;
    for (let i = 0; i < 4; i++) {
      const [next, value] = splitmix32(state);
      state = next;
      this.s[i] = value;
    }
  }

  /** A uniformly distributed unsigned 32-bit integer. */
  next(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = s[1]! << 9;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** A float in [0, 1). */
  float(): number {
    return this.next() / 0x1_0000_0000;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** An integer in [min, max]. */
  between(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }

  chance(probability: number): boolean {
    return this.float() < probability;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("Prng.pick needs at least one item");
    return items[this.int(items.length)]!;
  }

  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }

  /** An independent generator whose stream depends only on this one's state, not on later use. */
  fork(): Prng {
    return new Prng(this.next());
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
