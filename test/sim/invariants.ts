/**
 * Raft's safety properties, checked as the simulation runs: election safety (one leader per term,
 * over all history), log matching, leader completeness, state machine safety, no double vote,
 * durable-before-send, and terms, commits and applied indexes that never go back. Each hook
 * checks the event it is told about against everything seen before; a broken property throws
 * InvariantViolation. The hooks see only what a driver shows the world: what it writes to its
 * storage, what it sends, what its state machine applies, and its status.
 * Owns: the global history these properties are stated over. Must not touch: nodes or the network.
 */

import type { Entry, HardState, Message, NodeId, RaftStatus } from "../../lib/raft/types.ts";
import { type DiskState, entryAt, firstIndex, lastIndex, termAt } from "./disk.ts";

export class InvariantViolation extends Error {
  override name = "InvariantViolation";
}

/** FNV-1a over bytes: a cheap fingerprint for comparing entry payloads between nodes. */
export function digestBytes(bytes: Uint8Array, seed = 0x811c9dc5): number {
  let hash = seed >>> 0;
  for (let i = 0; i < bytes.length; i++) hash = Math.imul(hash ^ bytes[i]!, 0x01000193) >>> 0;
  return hash;
}

const entryKey = (e: Entry) => `${e.kind}:${e.data.length}:${digestBytes(e.data)}`;

interface CommittedEntry {
  readonly term: number;
  readonly key: string;
  /** The lowest term of any node that saw it committed: an upper bound of the term that committed it. */
  commitTerm: number;
}

interface NodeHistory {
  term: number;
  commit: number;
  applied: number;
  /** The highest term this node put on a message: it must have been durable before the send. */
  sentTerm: number;
  /** Entries of this node's log up to here were recorded as committed. */
  committedSeen: number;
}

export class Invariants {
  private readonly leaders = new Map<number, NodeId>();
  /** `${index}:${term}` -> the entry's payload and the term before it: Raft's unique entry id. */
  private readonly entries = new Map<string, { key: string; prevTerm: number }>();
  private readonly committed = new Map<number, CommittedEntry>();
  /** index -> the state machine digest after applying it. */
  private readonly appliedDigests = new Map<number, number>();
  /** Client command id -> the index it was applied at. */
  private readonly commandIndexes = new Map<number, number>();
  /** `${voter}:${term}` -> the candidate granted the vote. */
  private readonly votes = new Map<string, NodeId>();
  private readonly nodes = new Map<NodeId, NodeHistory>();
  /** Leaders in their term right now, with the committed prefix already found in their log. */
  private readonly currentLeaders = new Map<NodeId, { term: number; checkedUpTo: number }>();
  maxCommitted = 0;

  /** After a node wrote `written` (one Ready's entries) to its log. */
  onAppend(node: NodeId, log: Readonly<DiskState>, written: readonly Entry[]): void {
    for (const entry of written) {
      const prevTerm = termAt(log, entry.index - 1);
      if (prevTerm === undefined) {
        throw new InvariantViolation(
          `node ${node} appended entry ${entry.index} after a gap in its log`,
        );
      }
      const id = `${entry.index}:${entry.term}`;
      const known = this.entries.get(id);
      const key = entryKey(entry);
      if (!known) this.entries.set(id, { key, prevTerm });
      else if (known.key !== key || known.prevTerm !== prevTerm) {
        throw new InvariantViolation(
          `log matching: node ${node} holds entry ${entry.index} of term ${entry.term} ` +
            `(previous term ${prevTerm}) unlike another node's (previous term ${known.prevTerm}${known.key === key ? "" : ", other payload"})`,
        );
      }
    }
  }

  onSend(message: Message): void {
    const history = this.history(message.from);
    // Pre-votes carry a term the sender has not entered (and need not persist).
    if (message.type !== "preVote" && message.type !== "preVoteResp") {
      history.sentTerm = Math.max(history.sentTerm, message.term);
    }
    if (message.type !== "voteResp" || message.reject) return;
    const vote = `${message.from}:${message.term}`;
    const granted = this.votes.get(vote);
    if (granted === undefined) this.votes.set(vote, message.to);
    else if (granted !== message.to) {
      throw new InvariantViolation(
        `double vote: node ${message.from} voted for ${granted} and then ${message.to} in term ${message.term}`,
      );
    }
  }

  /**
   * Entries up to `upTo` of a node's log are committed: records them, or checks them against what
   * another node committed there. `term` bounds from above the term that committed them.
   */
  private recordCommitted(
    node: NodeId,
    history: NodeHistory,
    upTo: number,
    term: number,
    log: Readonly<DiskState>,
  ): void {
    for (
      let index = Math.max(history.committedSeen, firstIndex(log) - 1) + 1;
      index <= upTo;
      index++
    ) {
      const entry = entryAt(log, index)!;
      const known = this.committed.get(index);
      const key = entryKey(entry);
      if (!known) {
        this.committed.set(index, { term: entry.term, key, commitTerm: term });
        this.maxCommitted = Math.max(this.maxCommitted, index);
      } else if (known.term !== entry.term || known.key !== key) {
        throw new InvariantViolation(
          `state machine safety: node ${node} committed entry ${index} of term ${entry.term}, ` +
            `another node committed term ${known.term}${known.key === key ? "" : " with another payload"}`,
        );
      } else known.commitTerm = Math.min(known.commitTerm, term);
    }
    history.committedSeen = Math.max(history.committedSeen, upTo);
  }

  /** The state machine of `node` reached `digest` after applying `index`. */
  onApplied(node: NodeId, index: number, digest: number): void {
    const history = this.history(node);
    if (index <= history.applied) {
      throw new InvariantViolation(`node ${node} applied ${index} after ${history.applied}`);
    }
    history.applied = index;
    const known = this.appliedDigests.get(index);
    if (known === undefined) this.appliedDigests.set(index, digest);
    else if (known !== digest) {
      throw new InvariantViolation(
        `state machine safety: node ${node}'s state after index ${index} differs from another node's`,
      );
    }
  }

  /** A command is applied at one index only: a client's proposal takes effect at most once. */
  onCommandApplied(node: NodeId, command: number, index: number): void {
    const known = this.commandIndexes.get(command);
    if (known === undefined) this.commandIndexes.set(command, index);
    else if (known !== index) {
      throw new InvariantViolation(
        `node ${node} applied command ${command} at index ${index}, already applied at ${known}`,
      );
    }
  }

  /**
   * A state machine restored a snapshot whose last command is at `index`, with state `digest`. A
   * snapshot must hold exactly the state reached by applying the committed log up to there.
   */
  onRestored(node: NodeId, index: number, digest: number): void {
    const history = this.history(node);
    if (index < history.applied) {
      throw new InvariantViolation(
        `node ${node} restored snapshot ${index} over applied ${history.applied}`,
      );
    }
    history.applied = index;
    const known = this.appliedDigests.get(index);
    if (known === undefined) this.appliedDigests.set(index, digest);
    else if (known !== digest) {
      throw new InvariantViolation(
        `state machine safety: node ${node}'s snapshot at index ${index} differs from the applied log`,
      );
    }
  }

  /** Every committed entry is in the log of every leader of a later term (checks new ones only). */
  private checkLeaderCompleteness(node: NodeId, term: number, log: Readonly<DiskState>): void {
    let leader = this.currentLeaders.get(node);
    if (leader?.term !== term) {
      leader = { term, checkedUpTo: firstIndex(log) - 1 };
      this.currentLeaders.set(node, leader);
    }
    for (let index = leader.checkedUpTo + 1; index <= this.maxCommitted; index++) {
      const entry = this.committed.get(index);
      if (!entry || entry.commitTerm >= term) continue;
      if (index > lastIndex(log) || termAt(log, index) !== entry.term) {
        throw new InvariantViolation(
          `leader completeness: leader ${node} of term ${term} lacks entry ${index} ` +
            `(term ${entry.term}) committed by term ${entry.commitTerm}`,
        );
      }
    }
    leader.checkedUpTo = Math.max(leader.checkedUpTo, this.maxCommitted);
  }

  /** A node came back from a crash (or started) with this status from this durable state. */
  onRestart(node: NodeId, status: RaftStatus, durable: HardState): void {
    const history = this.history(node);
    if (
      status.term < durable.term ||
      (status.commit < durable.commit && status.commit < status.lastIndex)
    ) {
      throw new InvariantViolation(
        `node ${node} restarted at term ${status.term} commit ${status.commit} below its durable ` +
          `term ${durable.term} commit ${durable.commit}`,
      );
    }
    if (status.term < history.sentTerm) {
      throw new InvariantViolation(
        `node ${node} restarted in term ${status.term} but had sent messages in term ${history.sentTerm}: ` +
          "its term was not durable before it sent",
      );
    }
    history.term = status.term;
    history.commit = status.commit;
    history.committedSeen = 0;
    this.currentLeaders.delete(node);
  }

  /** A node is about to start (or restart) from its disk: its state machine starts empty. */
  onBoot(node: NodeId): void {
    this.history(node).applied = 0;
  }

  onStopped(node: NodeId): void {
    this.currentLeaders.delete(node);
  }

  /** A node reported that it leads `term` (checked at once, not only at the next status). */
  onLeader(node: NodeId, term: number): void {
    const leader = this.leaders.get(term);
    if (leader === undefined) this.leaders.set(term, node);
    else if (leader !== node) {
      throw new InvariantViolation(
        `election safety: nodes ${leader} and ${node} both led term ${term}`,
      );
    }
  }

  /** After every simulation step, for each running node, with its log as written. */
  onStatus(status: RaftStatus, log: Readonly<DiskState>): void {
    const { id, term, commit, applied, role } = status;
    const history = this.history(id);
    if (term < history.term)
      throw new InvariantViolation(`node ${id}'s term went back: ${history.term} -> ${term}`);
    if (commit < history.commit) {
      throw new InvariantViolation(`node ${id}'s commit went back: ${history.commit} -> ${commit}`);
    }
    if (applied > commit)
      throw new InvariantViolation(`node ${id} applied ${applied} beyond commit ${commit}`);
    if (commit > status.lastIndex) {
      throw new InvariantViolation(
        `node ${id} commits ${commit} beyond its log's end ${status.lastIndex}`,
      );
    }
    history.term = term;
    history.commit = commit;
    // A leader never rewrites its log, so all it committed and wrote is recorded, with the exact
    // term that committed it; a follower's log may still be rewritten above what it applied.
    const upTo = Math.min(role === "leader" ? commit : applied, lastIndex(log));
    this.recordCommitted(id, history, upTo, term, log);
    if (role !== "leader") {
      this.currentLeaders.delete(id);
      return;
    }
    this.onLeader(id, term);
    this.checkLeaderCompleteness(id, term, log);
  }

  get leaderTerms(): number {
    return this.leaders.size;
  }

  private history(node: NodeId): NodeHistory {
    let history = this.nodes.get(node);
    if (!history) {
      history = { term: 0, commit: 0, applied: 0, sentTerm: 0, committedSeen: 0 };
      this.nodes.set(node, history);
    }
    return history;
  }
}
