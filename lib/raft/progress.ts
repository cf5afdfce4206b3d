/**
 * What a leader knows about one follower: how far its log matches, what to send next, and how
 * much may be in flight. Owns: probe/replicate/snapshot states and the bounded in-flight window.
 * Must not touch: the log, messages, membership.
 */
import { assert } from "../shared/assert.ts";

/** A ring of the last index of each append in flight, oldest first. */
export class Inflights {
  private readonly ring: number[];
  private start = 0;
  count = 0;

  constructor(readonly capacity: number) {
    this.ring = new Array<number>(capacity).fill(0);
  }

  full(): boolean {
    return this.count === this.capacity;
  }

  add(lastIndex: number): void {
    this.ring[(this.start + this.count) % this.capacity] = lastIndex;
    this.count++;
  }

  /** Forgets the oldest append in flight (its answer is presumed lost). */
  freeFirst(): void {
    if (this.count === 0) return;
    this.start = (this.start + 1) % this.capacity;
    this.count--;
  }

  /** Forgets every append whose last index is <= index (the follower has it). */
  freeTo(index: number): void {
    while (this.count > 0 && this.ring[this.start]! <= index) {
      this.start = (this.start + 1) % this.capacity;
      this.count--;
    }
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
  }
}

export type ProgressState = "probe" | "replicate" | "snapshot";

export class Progress {
  match = 0;
  state: ProgressState = "probe";
  /** Probe: one append is out and unanswered, so wait for its answer or the next heartbeat. */
  probeSent = false;
  /** Heard from within the current election timeout (CheckQuorum). */
  recentActive = false;
  /** Snapshot: the index of the snapshot in flight. */
  pendingSnapshot = 0;
  /** Snapshot: leader ticks since the snapshot went out. */
  snapshotTicks = 0;
  /** The highest commit index already told to this follower by an append. */
  sentCommit = 0;
  readonly inflights: Inflights;

  constructor(
    public next: number,
    maxInflight: number,
  ) {
    this.inflights = new Inflights(maxInflight);
  }

  isPaused(): boolean {
    if (this.state === "probe") return this.probeSent;
    if (this.state === "replicate") return this.inflights.full();
    return true;
  }

  becomeProbe(): void {
    this.next =
      this.state === "snapshot" ? Math.max(this.match, this.pendingSnapshot) + 1 : this.match + 1;
    this.reset("probe");
  }

  /** Everything up to match is on the follower, so next is past it. */
  private checkMatchBelowNext(): void {
    assert(this.match < this.next, () => `progress has match ${this.match} >= next ${this.next}`);
  }

  becomeReplicate(): void {
    this.next = this.match + 1;
    this.reset("replicate");
  }

  becomeSnapshot(index: number): void {
    this.reset("snapshot");
    this.pendingSnapshot = index;
  }

  private reset(state: ProgressState): void {
    this.state = state;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.snapshotTicks = 0;
    this.inflights.reset();
  }

  /** An append covering up to `lastIndex` went out. */
  sent(lastIndex: number, hadEntries: boolean, commit: number): void {
    this.sentCommit = commit;
    if (this.state === "replicate") {
      if (hadEntries) {
        this.next = lastIndex + 1;
        this.inflights.add(lastIndex);
      }
    } else {
      this.probeSent = true;
    }
    this.checkMatchBelowNext();
  }

  /** The follower accepted up to `index`; false when that is old news. */
  maybeUpdate(index: number): boolean {
    this.probeSent = false;
    if (index <= this.match) return false;
    this.match = index;
    if (this.next <= index) this.next = index + 1;
    this.inflights.freeTo(index);
    return true;
  }

  /**
   * The follower lost its log (HardState.recovering): nothing it acknowledged before is known to
   * be there, so probe it afresh from `probeIndex` (the leader's guess from its hint), which
   * ends in a snapshot where the log was compacted. A snapshot in flight is left to its answer.
   * Lowering match only makes the leader count fewer copies; its commit index never goes back.
   */
  forgetMatch(probeIndex: number): boolean {
    if (this.state === "snapshot") return false;
    this.match = 0;
    this.reset("probe");
    this.next = probeIndex + 1;
    return true;
  }

  /**
   * The follower rejected an append at `rejected`; `probeIndex` is the leader's best guess of the
   * last matching index from the follower's hint. False when the rejection is stale.
   */
  maybeDecrTo(rejected: number, probeIndex: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      this.becomeProbe();
      return true;
    }
    if (this.state === "snapshot" || rejected !== this.next - 1) return false;
    this.next = Math.max(Math.min(rejected, probeIndex + 1), this.match + 1);
    this.probeSent = false;
    this.checkMatchBelowNext();
    return true;
  }
}
