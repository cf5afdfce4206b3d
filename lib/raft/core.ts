/**
 * The pure, synchronous Raft state machine (etcd/raft style): elections with PreVote and
 * CheckQuorum, log replication, commitment, snapshots, ReadIndex, leadership transfer and
 * single-server membership changes. It consumes ticks, messages and proposals and hands back
 * everything to persist, send and apply through ready().
 * Owns: Raft's decisions. Must not touch: I/O, clocks, Math.random, the state machine.
 */
import { assert } from "../shared/assert.ts";
import { RAFT_DEFAULTS } from "./defaults.ts";
import { RaftLog } from "./log.ts";
import {
  applyMembershipChange,
  decodeMembership,
  EMPTY_MEMBERSHIP,
  encodeMembership,
  isMember,
  isVoter,
} from "./membership.ts";
import { Progress } from "./progress.ts";
import { majority, quorumIndex, voteResult } from "./quorum.ts";
import { ReadIndexQueue, type ReadRequest } from "./readindex.ts";
import {
  type CatchUpPoint,
  type Entry,
  type EntryKind,
  type HardState,
  type Membership,
  type MembershipChange,
  MembershipPendingError,
  type Message,
  NONE,
  type NodeId,
  NotLeaderError,
  type RaftStatus,
  type ReadState,
  type Ready,
  type Role,
  type Snapshot,
} from "./types.ts";

export interface RaftConfig {
  id: NodeId;
  /** Randomized election timeout in [electionTicks, 2*electionTicks). */
  electionTicks: number;
  heartbeatTicks: number;
  /** Seeded source in [0,1). */
  random: () => number;
  /** Appends in flight per peer; the defaults of these five are in RAFT_DEFAULTS. */
  maxInflight?: number;
  /** Entries per append. */
  maxBatchEntries?: number;
  /** Payload bytes per append. */
  maxBatchBytes?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
}

/** What storage gives back at start: `entries` are those after the snapshot. */
export interface RaftRestore {
  hardState: HardState;
  snapshot?: Snapshot;
  entries: Entry[];
}

/** What a node held when its snapshot turned out unrestorable (the term is unknown when the file is unreadable). */
export interface LostLog {
  readonly hardState: HardState;
  readonly snapshot: { readonly index: number; readonly term?: number };
  /** The log after the snapshot. */
  readonly entries: readonly Entry[];
}

const EMPTY = new Uint8Array(0);

type Addressed = { to: NodeId };
type Outgoing = Message extends infer M
  ? M extends Message
    ? Omit<M, "from" | "term"> & Addressed & { term?: number }
    : never
  : never;

interface ConfEntry {
  readonly index: number;
  readonly membership: Membership;
}

export class RaftCore {
  readonly id: NodeId;
  private readonly electionTicks: number;
  private readonly heartbeatTicks: number;
  private readonly random: () => number;
  private readonly maxInflight: number;
  private readonly maxBatchEntries: number;
  private readonly maxBatchBytes: number;
  private readonly preVote: boolean;
  private readonly checkQuorum: boolean;

  private term: number;
  private vote: NodeId;
  /** Set while this node rebuilds a log it lost: see RaftCore.afterLostLog. */
  private recovering: CatchUpPoint | undefined;
  private leader: NodeId = NONE;
  private role: Role = "follower";
  private readonly log: RaftLog;

  /** Membership in force: the last membership entry in the log, else the snapshot's. */
  private membership: Membership;
  private snapshotMembership: Membership;
  /** Membership entries in the log after the snapshot, in index order. */
  private confs: ConfEntry[] = [];
  /** The latest snapshot, sent to followers that are behind the log start. */
  private snapshot: Snapshot | undefined;
  /** A snapshot received from the leader, not yet handed to the driver. */
  private receivedSnapshot: Snapshot | undefined;

  private applied: number;
  /** Last committed index handed out in a Ready. */
  private appliedHanded: number;

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedTimeout = 0;
  private readonly votes = new Map<NodeId, boolean>();
  private campaignIsTransfer = false;

  private readonly progress = new Map<NodeId, Progress>();
  /** Index of this leader term's noop: nothing is decided for the term until it commits. */
  private noopIndex = 0;
  private transferee: NodeId = NONE;
  private needsAppend = false;
  private needsReadHeartbeat = false;
  private readonly readQueue = new ReadIndexQueue();
  /** Follower: read contexts forwarded to the leader and not answered yet. */
  private readonly forwardedReads = new Set<number>();

  private messages: Message[] = [];
  private reads: ReadState[] = [];
  private failedReads: number[] = [];
  private prevHardState: HardState;
  private prevLeader: NodeId = NONE;
  private prevRole: Role = "follower";

  constructor(config: RaftConfig, restored: RaftRestore) {
    if (!(config.id > 0 && Number.isSafeInteger(config.id))) {
      throw new Error(`invalid node id ${config.id}: use a positive integer`);
    }
    if (!(config.electionTicks > config.heartbeatTicks && config.heartbeatTicks > 0)) {
      throw new Error("electionTicks must be greater than heartbeatTicks, which must be positive");
    }
    this.id = config.id;
    this.electionTicks = config.electionTicks;
    this.heartbeatTicks = config.heartbeatTicks;
    this.random = config.random;
    this.maxInflight = Math.max(1, config.maxInflight ?? RAFT_DEFAULTS.maxInflight);
    this.maxBatchEntries = Math.max(1, config.maxBatchEntries ?? RAFT_DEFAULTS.maxBatchEntries);
    this.maxBatchBytes = Math.max(1, config.maxBatchBytes ?? RAFT_DEFAULTS.maxBatchBytes);
    this.preVote = config.preVote ?? RAFT_DEFAULTS.preVote;
    this.checkQuorum = config.checkQuorum ?? RAFT_DEFAULTS.checkQuorum;

    const { hardState, snapshot, entries } = restored;
    const snapIndex = snapshot?.meta.index ?? 0;
    this.log = new RaftLog(snapIndex, snapshot?.meta.term ?? 0, entries, hardState.commit);
    this.term = hardState.term;
    this.vote = hardState.vote;
    this.recovering = hardState.recovering;
    this.snapshot = snapshot;
    this.snapshotMembership = snapshot?.meta.membership ?? EMPTY_MEMBERSHIP;
    for (const entry of entries) {
      if (entry.kind === "membership") {
        this.confs.push({ index: entry.index, membership: decodeMembership(entry.data) });
      }
    }
    this.membership = this.latestMembership();
    this.applied = snapIndex;
    this.appliedHanded = snapIndex;
    this.prevHardState = this.hardState();
    this.checkCaughtUp();
    this.resetElectionTimer();
  }

  /**
   * The state a node starts from once its snapshot on disk proved unrestorable: no snapshot, no
   * log, commit 0, the same term and vote (so it never votes twice in a term), and the point its
   * log must reach again before it votes or campaigns (HardState.recovering). It accepts appends
   * and snapshots from the leader meanwhile; its rejections say that its log was lost.
   *
   * Why it must not vote: a voter that lost entries it acknowledged could help elect a candidate
   * that lacks a committed entry. Why the point suffices: every entry whose commit counted one of
   * its lost acknowledgements was in its log (it acknowledges only what it stored, and Raft never
   * truncates a committed entry), has a term <= T, its durable term when it lost the log (it
   * acknowledged only in its current term), and was committed by a leader of a term <= T (a
   * leader counts only acknowledgements of its own term). Let N be the last index of a term-T
   * entry it held (the snapshot's index if its term is T or unknown; 0 if none). Once its log
   * ends at an entry of term > T, that entry's leader held every such entry at its election, so
   * before that entry, and log matching puts them in this log too. Once its log ends at an entry
   * of term T at index >= N: the entries of term T it lost are at or below N in the one log of
   * term T's leader, and those of older terms were in that leader's log before its first term-T
   * entry. Either way the lost entries are back, and voting is safe again. A later leader's noop
   * (term > T), or the same leader's log, gets it there without any new write.
   */
  static afterLostLog(lost: LostLog): RaftRestore {
    const { term, vote } = lost.hardState;
    let index = 0;
    for (const entry of lost.entries) if (entry.term >= term) index = entry.index;
    const snapshotTerm = lost.snapshot.term ?? term;
    if (index === 0 && snapshotTerm >= term) index = lost.snapshot.index;
    // Lost again before it caught up: it still owes the earlier point (terms never go back).
    const earlier = lost.hardState.recovering;
    if (earlier && earlier.term === term) index = Math.max(index, earlier.index);
    return { hardState: { term, vote, commit: 0, recovering: { term, index } }, entries: [] };
  }
  /** The state `mill init` persists: term 1 and one committed membership entry naming `id` the sole voter. */
  static bootstrap(id: NodeId): RaftRestore {
    const data = encodeMembership({ voters: [id], learners: [] });
    return {
      hardState: { term: 1, vote: NONE, commit: 1 },
      entries: [{ index: 1, term: 1, kind: "membership", data }],
    };
  }

  // ---- inputs ------------------------------------------------------------------------------

  tick(): void {
    if (this.role === "leader") this.tickLeader();
    else this.tickElection();
  }

  /** `msg` has the shape frames.ts validates: a peer's malformed message never gets here. */
  step(msg: Message): void {
    if (msg.to !== this.id || msg.from === this.id) return;
    if (msg.term > this.term) {
      if (msg.type === "preVote" || msg.type === "vote") {
        // Leader lease: a live leader exists, so this candidate is disruptive (unless asked to run).
        if (!msg.transfer && this.inLease()) return;
        if (msg.type === "vote") this.becomeFollower(msg.term, NONE);
      } else if (msg.type === "preVoteResp" && !msg.reject) {
        // A granted pre-vote echoes the future term; ours does not change.
      } else {
        const fromLeader =
          msg.type === "append" || msg.type === "heartbeat" || msg.type === "snapshot";
        this.becomeFollower(msg.term, fromLeader ? msg.from : NONE);
      }
    } else if (msg.term < this.term) {
      this.answerStale(msg);
      return;
    }

    switch (msg.type) {
      case "preVote":
      case "vote":
        this.handleVoteRequest(msg);
        break;
      case "preVoteResp":
        if (this.role === "precandidate") this.poll(msg.from, !msg.reject);
        break;
      case "voteResp":
        if (this.role === "candidate") this.poll(msg.from, !msg.reject);
        break;
      case "append":
        if (this.acceptLeader(msg.from)) this.handleAppend(msg);
        break;
      case "heartbeat":
        if (this.acceptLeader(msg.from)) this.handleHeartbeat(msg);
        break;
      case "snapshot":
        if (this.acceptLeader(msg.from)) this.handleSnapshot(msg);
        break;
      case "appendResp":
        if (this.role === "leader") this.handleAppendResp(msg);
        break;
      case "heartbeatResp":
        if (this.role === "leader") this.handleHeartbeatResp(msg);
        break;
      case "timeoutNow":
        if (this.role !== "leader" && this.mayCampaign()) this.campaign(false, true);
        break;
      case "readIndex":
        if (this.role === "leader") this.leaderRead({ ctx: msg.ctx, from: msg.from });
        else
          this.send({ type: "readIndexResp", to: msg.from, ctx: msg.ctx, index: 0, reject: true });
        break;
      case "readIndexResp":
        if (msg.from === this.leader && this.forwardedReads.delete(msg.ctx)) {
          if (msg.reject) this.failedReads.push(msg.ctx);
          else this.reads.push({ ctx: msg.ctx, index: msg.index });
        }
        break;
    }
  }

  propose(data: Uint8Array): { index: number; term: number } {
    if (this.role !== "leader") throw new NotLeaderError(this.leader);
    // While handing over, point callers at the node about to lead.
    if (this.transferee !== NONE) throw new NotLeaderError(this.transferee);
    return this.appendEntry("command", data);
  }

  /**
   * `command`, if given, rides in the same entry and is applied with it (membership.ts).
   * Allowed during a leadership transfer: removing or demoting the target aborts it. Refuses
   * with MembershipPendingError while this term's noop or the previous change is uncommitted
   * (one change at a time), and with a plain Error when the change itself is invalid.
   */
  proposeMembership(
    change: MembershipChange,
    command?: Uint8Array,
  ): { index: number; term: number } {
    if (this.role !== "leader") throw new NotLeaderError(this.leader);
    if (this.log.committed < this.noopIndex) {
      throw new MembershipPendingError("leader's first entry", this.noopIndex);
    }
    const pending = this.confs.at(-1);
    if (pending && pending.index > this.log.committed) {
      throw new MembershipPendingError("previous change", pending.index);
    }
    const next = applyMembershipChange(this.membership, change);
    return this.appendEntry("membership", encodeMembership(next, command));
  }

  readIndex(ctx: number): void {
    if (this.role === "leader") {
      this.leaderRead({ ctx, from: this.id });
    } else if (this.leader === NONE) {
      this.failedReads.push(ctx);
    } else {
      this.forwardedReads.add(ctx);
      this.send({ type: "readIndex", to: this.leader, ctx });
    }
  }

  /**
   * Whether some follower has not been told the commit index yet. A commit alone sends nothing:
   * the next append carries it, which under load comes within a moment and saves every follower
   * a message, an answer and a write per commit. The driver calls announceCommit shortly after,
   * for when no append follows; heartbeats carry it too.
   */
  hasCommitNews(): boolean {
    if (this.role !== "leader") return false;
    for (const pr of this.progress.values()) if (this.owesCommit(pr)) return true;
    return false;
  }

  /** Sends the commit index to each follower that has not had it (see hasCommitNews). */
  announceCommit(): void {
    if (this.role !== "leader") return;
    for (const [id, pr] of this.progress) if (this.owesCommit(pr)) this.sendAppends(id, pr, true);
  }

  /** A follower with a full window gets the commit with the append its next answer frees. */
  private owesCommit(pr: Progress): boolean {
    return pr.state === "replicate" && !pr.isPaused() && pr.sentCommit < this.log.committed;
  }

  transferLeadership(to: NodeId): void {
    if (this.role !== "leader") throw new NotLeaderError(this.leader);
    if (!isVoter(this.membership, to)) {
      throw new Error(`node ${to} is not a voter; only a voter can take over leadership`);
    }
    if (to === this.id || to === this.transferee) return;
    this.transferee = to;
    // The transfer must finish within one election timeout.
    this.electionElapsed = 0;
    const pr = this.progress.get(to)!;
    if (pr.match === this.log.lastIndex) this.send({ type: "timeoutNow", to });
    else this.needsAppend = true;
  }

  /**
   * Replaces the log up to `index` (applied) with a snapshot holding `data`. Returns undefined
   * and changes nothing when the log already starts there or later: a snapshot received from the
   * leader since the driver applied `index` has replaced it.
   */
  compact(index: number, data: Uint8Array): Snapshot | undefined {
    // The driver snapshots only what its state machine applied.
    assert(index <= this.applied, () => `compact at ${index}, but only ${this.applied} is applied`);
    if (index <= this.log.snapshotIndex) return undefined;
    const membership = this.membershipAt(index);
    const snapshot: Snapshot = { meta: { index, term: this.log.term(index)!, membership }, data };
    this.log.compact(index);
    this.snapshotMembership = membership;
    let kept = 0;
    while (kept < this.confs.length && this.confs[kept]!.index <= index) kept++;
    this.confs.splice(0, kept);
    this.snapshot = snapshot;
    return snapshot;
  }

  // ---- outputs -----------------------------------------------------------------------------

  hasReady(): boolean {
    this.flush();
    return (
      this.messages.length > 0 ||
      this.reads.length > 0 ||
      this.failedReads.length > 0 ||
      this.receivedSnapshot !== undefined ||
      this.log.hasUnstable() ||
      this.log.committed > this.appliedHanded ||
      this.leader !== this.prevLeader ||
      this.role !== this.prevRole ||
      this.hardStateChanged()
    );
  }

  /**
   * Hands over everything pending and forgets it: each Ready holds only what is new since the
   * previous one. Process Readies one at a time, in order.
   */
  ready(): Ready {
    this.flush();
    const softChanged = this.leader !== this.prevLeader || this.role !== this.prevRole;
    const hardState = this.hardStateChanged() ? this.hardState() : undefined;
    const committed =
      this.log.committed > this.appliedHanded
        ? this.log.slice(this.appliedHanded + 1, this.log.committed + 1)
        : [];
    const rd: Ready = {
      softState: softChanged ? { leader: this.leader, role: this.role } : undefined,
      hardState,
      snapshot: this.receivedSnapshot,
      entries: this.log.takeUnstable(),
      committed,
      messages: this.messages,
      reads: this.reads,
      failedReads: this.failedReads,
    };
    this.prevLeader = this.leader;
    this.prevRole = this.role;
    if (hardState) this.prevHardState = hardState;
    this.appliedHanded = this.log.committed;
    this.receivedSnapshot = undefined;
    this.messages = [];
    this.reads = [];
    this.failedReads = [];
    return rd;
  }

  /** The driver has persisted, sent and applied `ready`. */
  advance(ready: Ready): void {
    const last = ready.committed.at(-1)?.index ?? ready.snapshot?.meta.index ?? 0;
    if (last > this.applied) this.applied = last;
  }

  status(): RaftStatus {
    let progress: Record<NodeId, { match: number; recentActive: boolean }> | undefined;
    if (this.role === "leader") {
      progress = { [this.id]: { match: this.log.lastIndex, recentActive: true } };
      for (const [id, pr] of this.progress) {
        progress[id] = { match: pr.match, recentActive: pr.recentActive };
      }
    }
    return {
      id: this.id,
      role: this.role,
      term: this.term,
      leader: this.leader,
      commit: this.log.committed,
      applied: this.applied,
      lastIndex: this.log.lastIndex,
      membership: this.membership,
      ...(this.recovering ? { recovering: this.recovering } : {}),
      progress,
    };
  }

  // ---- roles -------------------------------------------------------------------------------

  private promotable(): boolean {
    return isVoter(this.membership, this.id);
  }

  /**
   * Whether this node may stand for election: a voter of its latest configuration, or a voter of
   * the committed one whose removal is not committed yet. The others may need it to commit that
   * removal (Raft thesis 4.2.2: its log can be the only one they would elect); its own vote does
   * not count, as voteResult counts only the latest configuration's voters.
   */
  private mayCampaign(): boolean {
    if (this.recovering) return false;
    if (this.promotable()) return true;
    const latest = this.confs.at(-1);
    const pending = latest !== undefined && latest.index > this.log.committed;
    return pending && isVoter(this.membershipAt(this.log.committed), this.id);
  }

  private inLease(): boolean {
    return (
      (this.checkQuorum || this.preVote) &&
      this.leader !== NONE &&
      this.electionElapsed < this.electionTicks
    );
  }

  private resetElectionTimer(): void {
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedTimeout = this.electionTicks + Math.floor(this.random() * this.electionTicks);
  }

  private setRole(role: Role, term: number, leader: NodeId): void {
    if (this.role === "leader" && role !== "leader") this.endLeadership();
    if (term > this.term) {
      this.term = term;
      this.vote = NONE;
    }
    this.role = role;
    if (leader !== this.leader) {
      for (const ctx of this.forwardedReads) this.failedReads.push(ctx);
      this.forwardedReads.clear();
      this.leader = leader;
    }
    this.votes.clear();
    this.transferee = NONE;
    this.resetElectionTimer();
  }

  private becomeFollower(term: number, leader: NodeId): void {
    this.setRole("follower", term, leader);
  }

  private becomeLeader(): void {
    this.setRole("leader", this.term, this.id);
    this.progress.clear();
    this.syncProgress();
    this.noopIndex = this.log.lastIndex + 1;
    this.appendEntry("noop", EMPTY);
  }

  private endLeadership(): void {
    this.progress.clear();
    this.needsAppend = false;
    this.needsReadHeartbeat = false;
    for (const read of this.readQueue.drain()) this.failRead(read);
  }

  private acceptLeader(from: NodeId): boolean {
    if (this.role === "leader") return false; // two leaders in one term cannot happen; ignore
    if (this.role !== "follower" || this.leader !== from) this.becomeFollower(this.term, from);
    this.electionElapsed = 0;
    return true;
  }

  // ---- elections ---------------------------------------------------------------------------

  private tickElection(): void {
    this.electionElapsed++;
    // The only voter has nobody to disrupt or wait for: a new or restarted one-node cluster
    // elects itself on its first tick instead of after a whole election timeout.
    const alone = this.membership.voters.length === 1 && this.promotable();
    if ((alone || this.electionElapsed >= this.randomizedTimeout) && this.mayCampaign()) {
      this.campaign(this.preVote, false);
    }
  }

  private campaign(pre: boolean, transfer: boolean): void {
    if (pre) {
      this.setRole("precandidate", this.term, NONE);
    } else {
      this.setRole("candidate", this.term + 1, NONE);
      this.vote = this.id;
    }
    this.campaignIsTransfer = transfer;
    if (this.poll(this.id, true)) return;
    const type = pre ? "preVote" : "vote";
    const term = pre ? this.term + 1 : this.term;
    const { lastIndex, lastTerm } = this.log;
    for (const to of this.membership.voters) {
      if (to === this.id) continue;
      if (transfer) this.send({ type, to, term, lastIndex, lastTerm, transfer });
      else this.send({ type, to, term, lastIndex, lastTerm });
    }
  }

  /** Records a vote; returns true when the election is decided. */
  private poll(from: NodeId, granted: boolean): boolean {
    this.votes.set(from, granted);
    const result = voteResult(this.membership.voters, this.votes);
    if (result === "won") {
      if (this.role === "precandidate") this.campaign(false, this.campaignIsTransfer);
      else this.becomeLeader();
      return true;
    }
    if (result === "lost") {
      this.becomeFollower(this.term, NONE);
      return true;
    }
    return false;
  }

  private handleVoteRequest(msg: Extract<Message, { type: "preVote" | "vote" }>): void {
    const pre = msg.type === "preVote";
    // A node rebuilding a lost log grants nothing (see afterLostLog).
    const canVote =
      this.recovering === undefined &&
      (this.vote === msg.from ||
        (this.vote === NONE && this.leader === NONE) ||
        (pre && msg.term > this.term));
    // A learner votes too (as in etcd): its own promotion may not have reached it yet while the
    // others count it as a voter, and refusing would leave a live majority without a leader.
    const grant = canVote && this.log.isUpToDate(msg.lastIndex, msg.lastTerm);
    if (grant && !pre) {
      this.vote = msg.from;
      this.electionElapsed = 0;
    }
    this.send({
      type: pre ? "preVoteResp" : "voteResp",
      to: msg.from,
      term: grant ? msg.term : this.term,
      reject: !grant,
    });
  }

  /** A message from an older term: tell its sender the news where that helps, else drop it. */
  private answerStale(msg: Message): void {
    if (msg.type === "append" || msg.type === "heartbeat") {
      // A deposed leader cut off by CheckQuorum/PreVote would never learn the new term otherwise.
      this.send({
        type: "appendResp",
        to: msg.from,
        reject: true,
        index: 0,
        hintIndex: 0,
        hintTerm: 0,
      });
    } else if (msg.type === "preVote") {
      this.send({ type: "preVoteResp", to: msg.from, reject: true });
    }
  }

  // ---- follower side -----------------------------------------------------------------------

  private handleAppend(msg: Extract<Message, { type: "append" }>): void {
    const { prevIndex, prevTerm, entries } = msg;
    const log = this.log;
    if (prevIndex < log.committed) {
      this.sendAppendResp(msg.from, false, log.committed);
      return;
    }
    if (!log.matchTerm(prevIndex, prevTerm)) {
      const hintIndex = log.findConflictByTerm(Math.min(prevIndex, log.lastIndex), prevTerm);
      this.rejectAppend(msg.from, prevIndex, hintIndex);
      return;
    }
    let i = 0;
    while (i < entries.length) {
      const e = entries[i]!;
      if (e.index > log.lastIndex) break;
      if (log.term(e.index) !== e.term) {
        // Appends behind the commit index returned above, so a conflict here would mean this
        // term's leader lacks a committed entry: Leader Completeness broke (etcd panics here).
        assert(
          e.index > log.committed,
          () =>
            `node ${msg.from}, leader of term ${msg.term}, sent entry ${e.index} of term ${e.term}, which conflicts with committed entry ${e.index} of term ${log.term(e.index)}`,
        );
        break;
      }
      i++;
    }
    const fresh = i === 0 ? entries : entries.slice(i);
    const confs = this.decodeConfs(fresh);
    if (fresh.length > 0 && fresh[0]!.index <= log.lastIndex) this.truncate(fresh[0]!.index);
    for (const e of fresh) log.append(e);
    if (confs.length > 0) this.addConfs(confs);
    const lastNew = prevIndex + entries.length;
    log.commitTo(Math.min(msg.commit, lastNew));
    this.checkCaughtUp();
    this.sendAppendResp(msg.from, false, lastNew);
  }

  private rejectAppend(to: NodeId, rejected: number, hintIndex: number): void {
    const hintTerm = this.log.term(hintIndex) ?? 0;
    const lost = this.recovering ? { logLost: true } : {};
    this.send({
      type: "appendResp",
      to,
      reject: true,
      index: rejected,
      hintIndex,
      hintTerm,
      ...lost,
    });
  }

  private handleHeartbeat(msg: Extract<Message, { type: "heartbeat" }>): void {
    // A leader tells a follower to commit only what it acknowledged: past the end of this log,
    // it acknowledged entries this node lost. An idle leader would send nothing else, so say so.
    if (this.recovering && msg.commit > this.log.lastIndex) {
      this.rejectAppend(msg.from, msg.commit, this.log.lastIndex);
    }
    this.log.commitTo(msg.commit);
    this.send({ type: "heartbeatResp", to: msg.from, ctx: msg.ctx });
  }

  /** Clears `recovering` once the log is back at its point (see afterLostLog). */
  private checkCaughtUp(): void {
    const point = this.recovering;
    if (!point) return;
    const { lastTerm, lastIndex } = this.log;
    if (lastTerm > point.term || (lastTerm === point.term && lastIndex >= point.index)) {
      this.recovering = undefined;
    }
  }

  private handleSnapshot(msg: Extract<Message, { type: "snapshot" }>): void {
    const snapshot = msg.snapshot;
    const meta = snapshot.meta;
    if (meta.index <= this.log.committed) {
      this.sendAppendResp(msg.from, false, this.log.committed);
      return;
    }
    if (this.log.matchTerm(meta.index, meta.term)) {
      // Our log already holds the snapshot's last entry: just move the commit index.
      this.log.commitTo(meta.index);
    } else {
      this.log.restore(meta.index, meta.term);
      this.confs = [];
      this.snapshotMembership = meta.membership;
      this.membership = meta.membership;
      this.snapshot = snapshot;
      this.receivedSnapshot = snapshot;
      this.appliedHanded = meta.index;
      this.checkCaughtUp();
    }
    this.sendAppendResp(msg.from, false, meta.index);
  }

  private sendAppendResp(to: NodeId, reject: boolean, index: number): void {
    this.send({ type: "appendResp", to, reject, index, hintIndex: 0, hintTerm: 0 });
  }

  // ---- leader side -------------------------------------------------------------------------

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTicks) {
      this.electionElapsed = 0;
      if (this.checkQuorum && !this.quorumActive()) {
        this.becomeFollower(this.term, NONE);
        return;
      }
      for (const pr of this.progress.values()) pr.recentActive = false;
      this.transferee = NONE;
    }
    for (const pr of this.progress.values()) {
      // A lost snapshot would otherwise stall the follower forever: probe again from its match.
      if (pr.state === "snapshot" && ++pr.snapshotTicks >= this.electionTicks) {
        pr.becomeProbe();
        this.needsAppend = true;
      }
    }
    if (this.heartbeatElapsed >= this.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat();
    }
  }

  private quorumActive(): boolean {
    let active = 0;
    for (const id of this.membership.voters) {
      if (id === this.id || this.progress.get(id)?.recentActive) active++;
    }
    return active >= majority(this.membership.voters.length);
  }

  private appendEntry(kind: EntryKind, data: Uint8Array): { index: number; term: number } {
    const index = this.log.lastIndex + 1;
    const term = this.term;
    this.log.append({ index, term, kind, data });
    this.needsAppend = true;
    if (kind === "membership") {
      this.addConfs([{ index, membership: decodeMembership(data) }]);
      this.maybeCommit();
    } else if (this.membership.voters.length === 1) {
      // Only a quorum of one can commit an entry nobody else has yet.
      this.maybeCommit();
    }
    return { index, term };
  }

  private handleAppendResp(msg: Extract<Message, { type: "appendResp" }>): void {
    const pr = this.progress.get(msg.from);
    if (!pr) return;
    pr.recentActive = true;
    if (msg.reject) {
      const probeIndex =
        msg.hintTerm > 0 ? this.log.findConflictByTerm(msg.hintIndex, msg.hintTerm) : msg.hintIndex;
      // A follower that lost its log: a rejection at or below its match is not stale news.
      const changed = msg.logLost
        ? pr.forgetMatch(probeIndex)
        : pr.maybeDecrTo(msg.index, probeIndex);
      if (changed) this.needsAppend = true;
      return;
    }
    if (!(msg.index <= this.log.lastIndex)) return;
    const wasPaused = pr.isPaused();
    if (pr.maybeUpdate(msg.index)) {
      if (pr.state === "probe") pr.becomeReplicate();
      else if (pr.state === "snapshot" && pr.match >= pr.pendingSnapshot) pr.becomeReplicate();
      this.maybeCommit();
      if (msg.from === this.transferee && pr.match === this.log.lastIndex) {
        this.send({ type: "timeoutNow", to: msg.from });
      }
      this.needsAppend = true;
    } else if (wasPaused && !pr.isPaused()) {
      this.needsAppend = true;
    }
  }

  private handleHeartbeatResp(msg: Extract<Message, { type: "heartbeatResp" }>): void {
    const pr = this.progress.get(msg.from);
    if (!pr) return;
    pr.recentActive = true;
    pr.probeSent = false;
    if (pr.match < this.log.lastIndex) {
      // The follower is alive but behind: appends or their answers were lost. Make room for one
      // append and send it even if empty; a rejection turns the progress back to probing.
      if (pr.state === "replicate" && pr.inflights.full()) pr.inflights.freeFirst();
      this.sendAppends(msg.from, pr, true);
    }
    this.readQueue.ack(msg.from, msg.ctx);
    this.releaseReads();
  }

  private maybeCommit(): void {
    const self = this.id;
    const lastIndex = this.log.lastIndex;
    const index = quorumIndex(this.membership.voters, (id) =>
      id === self ? lastIndex : (this.progress.get(id)?.match ?? 0),
    );
    // Figure 8: only an entry of the current term is committed by counting replicas.
    if (this.log.term(index) !== this.term || !this.log.commitTo(index)) return;
    this.needsAppend = true;
    if (this.log.committed >= this.noopIndex && this.readQueue.startWaiting(this.log.committed)) {
      this.needsReadHeartbeat = true;
      this.releaseReads();
    }
    const lastConf = this.confs.at(-1);
    if (!this.promotable() && (!lastConf || lastConf.index <= this.log.committed)) {
      this.stepDownRemoved();
    }
  }

  /** This leader's removal (or demotion) committed: hand over to an up-to-date voter and step down. */
  private stepDownRemoved(): void {
    for (const id of this.membership.voters) {
      if (this.progress.get(id)?.match === this.log.lastIndex) {
        this.send({ type: "timeoutNow", to: id });
        break;
      }
    }
    this.becomeFollower(this.term, NONE);
  }

  /** Sends what each follower is missing: one batch per peer per call, bounded by the window. */
  private flush(): void {
    if (this.role !== "leader") return;
    if (this.needsAppend) {
      this.needsAppend = false;
      for (const [id, pr] of this.progress) this.sendAppends(id, pr);
    }
    if (this.needsReadHeartbeat) {
      this.needsReadHeartbeat = false;
      this.broadcastHeartbeat();
    }
  }

  private sendAppends(to: NodeId, pr: Progress, sendIfEmpty = false): void {
    const log = this.log;
    while (!pr.isPaused()) {
      const hasEntries = pr.next <= log.lastIndex;
      // Replicating and nothing to send but (maybe) a commit index: see hasCommitNews.
      if (!hasEntries && !sendIfEmpty && pr.state === "replicate") return;
      const prevIndex = pr.next - 1;
      const prevTerm = log.term(prevIndex);
      if (prevTerm === undefined) {
        this.sendSnapshot(to, pr);
        return;
      }
      const entries = hasEntries
        ? log.batch(pr.next, this.maxBatchEntries, this.maxBatchBytes)
        : [];
      const commit = log.committed;
      this.send({ type: "append", to, prevIndex, prevTerm, entries, commit });
      pr.sent(prevIndex + entries.length, hasEntries, commit);
      if (!hasEntries) return;
    }
  }

  private sendSnapshot(to: NodeId, pr: Progress): void {
    const snapshot = this.snapshot;
    if (!snapshot) return;
    this.send({ type: "snapshot", to, snapshot });
    pr.becomeSnapshot(snapshot.meta.index);
  }

  private broadcastHeartbeat(): void {
    const ctx = this.readQueue.lastSeq;
    const commit = this.log.committed;
    for (const [to, pr] of this.progress) {
      // Never tell a follower to commit past what it is known to hold.
      this.send({ type: "heartbeat", to, commit: Math.min(commit, pr.match), ctx });
    }
  }

  // ---- reads -------------------------------------------------------------------------------

  private leaderRead(request: ReadRequest): void {
    if (this.log.committed < this.noopIndex) {
      this.readQueue.wait(request);
      return;
    }
    this.readQueue.add(request, this.log.committed);
    this.needsReadHeartbeat = true;
    this.releaseReads();
  }

  private releaseReads(): void {
    for (const read of this.readQueue.release(this.membership.voters, this.id)) {
      if (read.from === this.id) this.reads.push({ ctx: read.ctx, index: read.index });
      else {
        this.send({
          type: "readIndexResp",
          to: read.from,
          ctx: read.ctx,
          index: read.index,
          reject: false,
        });
      }
    }
  }

  private failRead(read: ReadRequest): void {
    if (read.from === this.id) this.failedReads.push(read.ctx);
    else this.send({ type: "readIndexResp", to: read.from, ctx: read.ctx, index: 0, reject: true });
  }

  // ---- membership --------------------------------------------------------------------------

  private latestMembership(): Membership {
    return this.confs.at(-1)?.membership ?? this.snapshotMembership;
  }

  private membershipAt(index: number): Membership {
    for (let i = this.confs.length - 1; i >= 0; i--) {
      if (this.confs[i]!.index <= index) return this.confs[i]!.membership;
    }
    return this.snapshotMembership;
  }

  /** The membership entries among `entries`, decoded (frames.ts checked that they decode). */
  private decodeConfs(entries: readonly Entry[]): ConfEntry[] {
    const confs: ConfEntry[] = [];
    for (const e of entries) {
      if (e.kind === "membership") {
        confs.push({ index: e.index, membership: decodeMembership(e.data) });
      }
    }
    return confs;
  }

  /** A configuration takes effect as soon as it is in the log. */
  private addConfs(confs: ConfEntry[]): void {
    this.confs.push(...confs);
    this.setMembership(confs.at(-1)!.membership);
  }

  /** Truncating the log reverts any configuration that came from the dropped entries. */
  private truncate(index: number): void {
    this.log.truncateFrom(index);
    const before = this.confs.length;
    while (this.confs.length > 0 && this.confs.at(-1)!.index >= index) this.confs.pop();
    if (this.confs.length !== before) this.setMembership(this.latestMembership());
  }

  private setMembership(membership: Membership): void {
    this.membership = membership;
    if (this.role !== "leader") return;
    this.syncProgress();
    if (this.transferee !== NONE && !isVoter(membership, this.transferee)) {
      this.transferee = NONE;
    }
  }

  /** Leader: one progress per other member, new members probed from the end of the log. */
  private syncProgress(): void {
    const m = this.membership;
    for (const id of this.progress.keys()) {
      if (!isMember(m, id)) this.progress.delete(id);
    }
    for (const id of [...m.voters, ...m.learners]) {
      if (id !== this.id && !this.progress.has(id)) {
        this.progress.set(id, new Progress(this.log.lastIndex + 1, this.maxInflight));
      }
    }
    this.needsAppend = true;
  }

  // ---- plumbing ----------------------------------------------------------------------------

  private hardStateChanged(): boolean {
    const prev = this.prevHardState;
    return (
      prev.term !== this.term ||
      prev.vote !== this.vote ||
      prev.commit !== this.log.committed ||
      prev.recovering !== this.recovering
    );
  }

  private hardState(): HardState {
    const state = { term: this.term, vote: this.vote, commit: this.log.committed };
    return this.recovering ? { ...state, recovering: this.recovering } : state;
  }

  private send(msg: Outgoing): void {
    const out = msg as unknown as { from: NodeId; term?: number };
    out.from = this.id;
    if (out.term === undefined) out.term = this.term;
    this.messages.push(out as unknown as Message);
  }
}
