/**
 * The vocabulary of Mill's Raft: entries, messages, the Ready hand-off between the pure core and
 * its driver, and the RaftNode interface the rest of Mill consumes.
 * Owns: only types and tiny constants. Must not touch: I/O, clocks, randomness.
 */

/** A server's identity. Positive, assigned by the cluster, never reused. */
export type NodeId = number;
/** No node (no vote, no known leader). */
export const NONE: NodeId = 0;

export type Role = "follower" | "precandidate" | "candidate" | "leader";

/** "command" carries application data; "noop" opens each leader term; "membership" carries a full Membership. */
export type EntryKind = "command" | "noop" | "membership";

export interface Entry {
  readonly index: number;
  readonly term: number;
  readonly kind: EntryKind;
  /** command: the application's bytes; membership: encodeMembership(); noop: empty. */
  readonly data: Uint8Array;
}

/** A complete configuration. Learners (non-voters) receive the log but never vote or count toward commit. */
export interface Membership {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

/** One server at a time, hashicorp style. */
export type MembershipChange =
  | { readonly op: "addLearner"; readonly id: NodeId }
  | { readonly op: "promote"; readonly id: NodeId }
  | { readonly op: "demote"; readonly id: NodeId }
  | { readonly op: "remove"; readonly id: NodeId };

/**
 * Where a node that lost its log must get back to before it votes again: its log must end at an
 * entry at least as up to date (Raft's order: term first, then index) as `index` of `term`.
 */
export interface CatchUpPoint {
  readonly term: number;
  readonly index: number;
}

/** What must be on disk (fsynced) before any message that depends on it leaves the node. */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
  /**
   * Set while the node rebuilds a log it lost (its snapshot on disk could not be restored): it
   * grants no vote or pre-vote and never campaigns until its log reaches this point.
   */
  readonly recovering?: CatchUpPoint;
}

export interface SnapshotMeta {
  readonly index: number;
  readonly term: number;
  readonly membership: Membership;
}

export interface Snapshot {
  readonly meta: SnapshotMeta;
  /** The state machine's own encoding; opaque to Raft. */
  readonly data: Uint8Array;
}

interface Envelope {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
}

export type Message =
  | (Envelope & {
      readonly type: "preVote" | "vote";
      readonly lastIndex: number;
      readonly lastTerm: number;
      /** Set when the campaign was started by TimeoutNow: voters skip the leader-lease check. */
      readonly transfer?: boolean;
    })
  | (Envelope & { readonly type: "preVoteResp" | "voteResp"; readonly reject: boolean })
  | (Envelope & {
      readonly type: "append";
      readonly prevIndex: number;
      readonly prevTerm: number;
      readonly entries: readonly Entry[];
      readonly commit: number;
    })
  | (Envelope & {
      readonly type: "appendResp";
      readonly reject: boolean;
      /** Accepted: the follower's match index. Rejected: the prevIndex that did not match. */
      readonly index: number;
      /** Rejected only: fast backtracking hint (the follower's best guess of a matching index and its term). */
      readonly hintIndex: number;
      readonly hintTerm: number;
      /**
       * Rejected only: the follower lost its log and is rebuilding it, so what it acknowledged
       * before is gone and the leader's match index for it no longer holds (protocol 1.1).
       */
      readonly logLost?: boolean;
    })
  | (Envelope & { readonly type: "heartbeat"; readonly commit: number; readonly ctx: number })
  | (Envelope & { readonly type: "heartbeatResp"; readonly ctx: number })
  | (Envelope & { readonly type: "snapshot"; readonly snapshot: Snapshot })
  | (Envelope & { readonly type: "timeoutNow" })
  | (Envelope & { readonly type: "readIndex"; readonly ctx: number })
  | (Envelope & {
      readonly type: "readIndexResp";
      readonly ctx: number;
      readonly index: number;
      readonly reject: boolean;
    });

export type MessageType = Message["type"];

/** A linearizable read may be served once the local applied index reaches `index`. */
export interface ReadState {
  readonly ctx: number;
  readonly index: number;
}

/**
 * What the core hands its driver after each step. The driver must, in order:
 * 1. persist `snapshot` (if any), then truncate the log at entries[0].index and append `entries`,
 *    then persist `hardState` (if any), and fsync;
 * 2. only then send `messages`;
 * 3. apply `committed` in order (restoring `snapshot` into the state machine first, if any);
 * 4. call core.advance(ready).
 */
export interface Ready {
  readonly softState?: { readonly leader: NodeId; readonly role: Role };
  readonly hardState?: HardState;
  readonly snapshot?: Snapshot;
  readonly entries: readonly Entry[];
  readonly committed: readonly Entry[];
  readonly messages: readonly Message[];
  readonly reads: readonly ReadState[];
  /** Read requests (by ctx) that cannot be served by this node any more (no leader, lost leadership). */
  readonly failedReads: readonly number[];
}

/** Thrown (or returned as a rejection) when a request needs the leader. */
export class NotLeaderError extends Error {
  constructor(readonly leader: NodeId) {
    super(leader === NONE ? "no leader is known" : `not the leader (leader is node ${leader})`);
    this.name = "NotLeaderError";
  }
}

/**
 * The leader refuses a membership change for now, because an earlier entry it depends on is not
 * committed yet: this leader's first entry (its noop), or the previous membership change. Nothing
 * was appended; the same change succeeds once `waitingFor` commits, which takes a few ticks.
 */
export class MembershipPendingError extends Error {
  constructor(
    readonly waitingFor: "leader's first entry" | "previous change",
    readonly index: number,
  ) {
    super(
      waitingFor === "leader's first entry"
        ? `this leader's first entry (index ${index}) is not committed yet; retry the change shortly`
        : `membership change at index ${index} is still pending; retry once it commits`,
    );
    this.name = "MembershipPendingError";
  }
}

/** The state machine Raft drives. Must be deterministic: same entries in, same state out. */
export interface StateMachine {
  /** Applies one committed command and returns the result handed back to its proposer. */
  apply(index: number, data: Uint8Array): unknown;
  snapshot(): Uint8Array;
  restore(data: Uint8Array): void;
  /**
   * Throws a one-line error if restore(data) would fail. The driver checks a received snapshot
   * before it is persisted, and refuses it if this throws; without check, every snapshot passes.
   */
  check?(data: Uint8Array): void;
}

export interface RaftStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly leader: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly membership: Membership;
  /** Set while this node rebuilds a log it lost (HardState.recovering). */
  readonly recovering?: CatchUpPoint;
  /** Leader only: each peer's match index. */
  readonly progress?: Readonly<
    Record<NodeId, { readonly match: number; readonly recentActive: boolean }>
  >;
}

/**
 * A running Raft server (the driver). Everything async resolves after the effect is committed
 * and applied locally, and rejects with NotLeaderError when this node cannot lead the request.
 */
export interface RaftNode {
  readonly id: NodeId;
  status(): RaftStatus;
  /** Proposes an application command; resolves with the state machine's apply() result. */
  propose(data: Uint8Array): Promise<unknown>;
  /** Resolves once the local state machine reflects every write committed before the call (ReadIndex). */
  readBarrier(): Promise<void>;
  /** Adds as learner, waits until it has caught up, then promotes it. Idempotent for an existing voter. */
  addVoter(id: NodeId): Promise<void>;
  /**
   * Removes a voter or learner. `command`, if given, commits in the same entry and is applied
   * with it (alone, as an ordinary entry, when `id` is not in the configuration); resolves with
   * its apply() result.
   */
  removeServer(id: NodeId, command?: Uint8Array): Promise<unknown>;
  /**
   * As removeServer, for a node that never became a voter (an expired join): its learner entry,
   * if any, goes with `command` in one entry. Once it is a voter (a promotion that was running
   * finished first) nothing is proposed and it resolves undefined.
   */
  removeLearner(id: NodeId, command: Uint8Array): Promise<unknown>;
  demoteVoter(id: NodeId): Promise<void>;
  transferLeadership(to: NodeId): Promise<void>;
  /** Called on every role or leader change. */
  onLeaderChange(listener: (leader: NodeId, role: Role) => void): () => void;
  stop(): Promise<void>;
}
