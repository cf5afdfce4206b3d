/**
 * One node's Raft log in memory: the snapshot boundary, the entries after it, the commit index,
 * and the suffix not yet handed to storage. Owns: term lookup, matching, truncation, batching,
 * compaction. Must not touch: roles, membership, messages, I/O.
 */
import { assert } from "../shared/assert.ts";
import type { Entry } from "./types.ts";

export class RaftLog {
  /** entries[i].index === snapshotIndex + 1 + i */
  private entries: Entry[];
  private snapIndex: number;
  private snapTerm: number;
  committed: number;
  /** First index that has not been handed to the driver for persistence yet. */
  private unstableFrom: number;

  constructor(snapshotIndex: number, snapshotTerm: number, entries: Entry[], committed: number) {
    for (let i = 0; i < entries.length; i++) {
      if (entries[i]!.index !== snapshotIndex + 1 + i) {
        throw new Error(
          `restored log is not contiguous at index ${snapshotIndex + 1 + i}: repair or wipe the data directory`,
        );
      }
    }
    this.entries = entries;
    this.snapIndex = snapshotIndex;
    this.snapTerm = snapshotTerm;
    this.committed = Math.min(Math.max(committed, snapshotIndex), this.lastIndex);
    this.unstableFrom = this.lastIndex + 1;
  }

  get snapshotIndex(): number {
    return this.snapIndex;
  }

  get lastIndex(): number {
    return this.snapIndex + this.entries.length;
  }

  get lastTerm(): number {
    const n = this.entries.length;
    return n === 0 ? this.snapTerm : this.entries[n - 1]!.term;
  }

  /** The term at `index`, or undefined when it was compacted away or does not exist yet. */
  term(index: number): number | undefined {
    if (index === this.snapIndex) return this.snapTerm;
    if (index < this.snapIndex || index > this.lastIndex) return undefined;
    return this.entries[index - this.snapIndex - 1]!.term;
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** Raft's election restriction: is a log ending at (lastIndex, lastTerm) at least as up to date? */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm;
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex);
  }

  append(entry: Entry): void {
    assert(
      entry.index === this.lastIndex + 1,
      () => `appended entry ${entry.index} to a log ending at ${this.lastIndex}`,
    );
    this.entries.push(entry);
  }

  /** Drops every entry from `index` on; they must be rewritten to storage. */
  truncateFrom(index: number): void {
    this.entries.length = index - this.snapIndex - 1;
    if (index < this.unstableFrom) this.unstableFrom = index;
  }

  /** Entries in [from, to). */
  slice(from: number, to: number): Entry[] {
    const base = this.snapIndex + 1;
    return this.entries.slice(from - base, to - base);
  }

  /** Entries from `from` for one append message: at most maxEntries, and maxBytes of payload unless a single entry is larger. */
  batch(from: number, maxEntries: number, maxBytes: number): Entry[] {
    const start = from - this.snapIndex - 1;
    const end = Math.min(this.entries.length, start + maxEntries);
    let bytes = 0;
    let i = start;
    for (; i < end; i++) {
      bytes += this.entries[i]!.data.length;
      if (bytes > maxBytes && i > start) break;
    }
    return this.entries.slice(start, i);
  }

  /** The largest index <= `index` whose term is <= `term` (fast backtracking skips whole terms). */
  findConflictByTerm(index: number, term: number): number {
    let i = Math.min(index, this.lastIndex);
    while (i > this.snapIndex && this.entries[i - this.snapIndex - 1]!.term > term) i--;
    return Math.max(i, this.snapIndex);
  }

  commitTo(index: number): boolean {
    const target = Math.min(index, this.lastIndex);
    if (target <= this.committed) return false;
    this.committed = target;
    return true;
  }

  /** Hands out the entries not yet given to storage, in order. */
  takeUnstable(): Entry[] {
    const from = this.unstableFrom;
    this.unstableFrom = this.lastIndex + 1;
    return from > this.lastIndex ? [] : this.slice(from, this.lastIndex + 1);
  }

  hasUnstable(): boolean {
    return this.unstableFrom <= this.lastIndex;
  }

  /** Drops entries <= index; the snapshot at `index` now stands for them. */
  compact(index: number): void {
    const term = this.term(index)!;
    this.entries.splice(0, index - this.snapIndex);
    this.snapIndex = index;
    this.snapTerm = term;
  }

  /** Replaces everything with a snapshot received from the leader. */
  restore(index: number, term: number): void {
    this.entries = [];
    this.snapIndex = index;
    this.snapTerm = term;
    this.committed = index;
    this.unstableFrom = index + 1;
  }
}
