/**
 * The leader's queue of linearizable read requests (ReadIndex). Each request records the commit
 * index when it arrived and waits until a quorum has answered a heartbeat sent after it.
 * Owns: request bookkeeping and acknowledgement counting. Must not touch: messages, the log.
 */
import { quorumIndex } from "./quorum.ts";
import type { NodeId } from "./types.ts";

export interface ReadRequest {
  readonly ctx: number;
  /** The node that asked (the leader itself for local reads). */
  readonly from: NodeId;
}

export interface PendingRead extends ReadRequest {
  readonly seq: number;
  readonly index: number;
}

export class ReadIndexQueue {
  /** Requests that arrived before this term's noop committed; they get an index once it does. */
  private waiting: ReadRequest[] = [];
  private pending: PendingRead[] = [];
  /** Highest heartbeat sequence each follower has answered in this term. */
  private readonly acked = new Map<NodeId, number>();
  /** Sequence carried by heartbeats; a response to `seq` confirms every request numbered <= seq. */
  lastSeq = 0;

  wait(request: ReadRequest): void {
    this.waiting.push(request);
  }

  /** Gives waiting requests their index; returns true when any needs a heartbeat round. */
  startWaiting(index: number): boolean {
    const started = this.waiting.length > 0;
    for (const request of this.waiting) this.add(request, index);
    this.waiting = [];
    return started;
  }

  add(request: ReadRequest, index: number): void {
    this.pending.push({ ctx: request.ctx, from: request.from, seq: ++this.lastSeq, index });
  }

  ack(from: NodeId, seq: number): void {
    if (seq > (this.acked.get(from) ?? 0)) this.acked.set(from, seq);
  }

  /** Removes and returns the requests a quorum of `voters` has confirmed (`self` confirms all). */
  release(voters: readonly NodeId[], self: NodeId): PendingRead[] {
    if (this.pending.length === 0) return [];
    const confirmed = quorumIndex(voters, (id) =>
      id === self ? this.lastSeq : (this.acked.get(id) ?? 0),
    );
    let n = 0;
    while (n < this.pending.length && this.pending[n]!.seq <= confirmed) n++;
    return n === 0 ? [] : this.pending.splice(0, n);
  }

  /** Empties the queue (leadership ended) and returns every request that was in it. */
  drain(): ReadRequest[] {
    const all: ReadRequest[] = [...this.waiting, ...this.pending];
    this.waiting = [];
    this.pending = [];
    this.acked.clear();
    return all;
  }
}
