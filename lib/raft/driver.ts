/**
 * The Raft driver: runs one RaftCore against a storage, a transport and a clock it is given, and
 * exposes it as a RaftNode. startRaftNode (start.ts) gives it the real ones (segment files,
 * TCP, timers); the simulator (test/sim) gives it a simulated disk, network and virtual time, so
 * the code below is the code that is simulated.
 * Each Ready is persisted (one fdatasync), then sent, then applied, then advanced; proposals and
 * messages arriving during the fsync wait, are stepped together once the event loop polls
 * again, and leave as the next batch, which is what turns concurrency into throughput (group
 * commit).
 * Refinements that keep the fsync and the network off the critical path where they guard nothing:
 * - A Ready whose only durable change is the commit index is written without an fsync of its
 *   own and without waiting: the commit index is recoverable from peers (etcd applies before
 *   that write, too); the next synced save makes it durable.
 * - A leader sends appends and heartbeats before its own fsync, so replication overlaps it
 *   (Raft thesis 10.2.1; etcd: "messages may be sent while entries from the same batch are
 *   being persisted"). Safe because Readies run one at a time: a commit index counting this
 *   batch's entries can only appear in a later Ready, after this fsync. So an early message
 *   carries a commit below the batch's first entry, and a new term or vote always reaches disk
 *   before any message.
 * - A leader's new commit index waits up to commitNewsMs for the next append to carry it (see
 *   RaftCore.hasCommitNews): under load it always does, which halves the messages per write.
 * Owns: the tick timer, the Ready loop, waiting callers, periodic snapshots. Must not touch:
 * Raft decisions (core.ts), bytes on disk (storage/), sockets (transport/).
 */

import type { Cancel, Clock } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import { SerialQueue } from "../shared/serial.ts";
import { type LostLog, RaftCore, type RaftRestore } from "./core.ts";
import { RAFT_DEFAULTS } from "./defaults.ts";
import { decodeMembershipEntry } from "./membership.ts";
import type { RaftStorage } from "./storage/storage.ts";
import {
  type Entry,
  type Membership,
  type MembershipChange,
  MembershipPendingError,
  type Message,
  NONE,
  type NodeId,
  NotLeaderError,
  type RaftNode,
  type RaftStatus,
  type Ready,
  type Role,
  type StateMachine,
} from "./types.ts";

type Settings = {
  readonly [K in
    | "tickMs"
    | "heartbeatTicks"
    | "electionTicks"
    | "snapshotEvery"
    | "commitNewsMs"
    | "catchUpEntries"
    | "catchUpTimeoutMs"]: number;
};

export interface DriverOptions {
  readonly id: NodeId;
  readonly stateMachine: StateMachine;
  /** With empty storage: start as the only voter of a new cluster (else wait to be added). */
  readonly bootstrap?: boolean;
  /** Time per Raft tick. */
  readonly tickMs?: number;
  readonly heartbeatTicks?: number;
  /** Election timeout, randomized in [electionTicks, 2 * electionTicks). */
  readonly electionTicks?: number;
  /** Snapshot the state machine and compact the log every this many applied entries. */
  readonly snapshotEvery?: number;
  /**
   * How long a leader lets a new commit index wait for the next append to carry it before
   * sending it on its own (followers apply that much later when idle).
   */
  readonly commitNewsMs?: number;
  /** addVoter promotes a learner once its match index is within this many entries of the leader's last. */
  readonly catchUpEntries?: number;
  /** How long addVoter waits for a learner to catch up. */
  readonly catchUpTimeoutMs?: number;
  readonly maxInflight?: number;
  readonly maxBatchEntries?: number;
  readonly maxBatchBytes?: number;
  readonly preVote?: boolean;
  readonly checkQuorum?: boolean;
  readonly random?: () => number;
  readonly warn?: (message: string) => void;
  /**
   * Called once if the driver stops on an error it cannot continue from (a failed write, a
   * state machine that threw on restore): the node no longer takes part in Raft.
   */
  readonly onFatal?: (error: Error) => void;
}

/** What the driver needs of a network: send what a Ready says; inbound messages go to Driver.receive. */
export interface RaftTransport {
  /** Queues messages to their peers. Never throws. */
  send(messages: readonly Message[]): void;
  close(): Promise<void>;
}

/** The driver's I/O, injected. */
export interface DriverIo {
  readonly storage: RaftStorage;
  readonly transport: RaftTransport;
  readonly clock: Clock;
}

/** A snapshot the node cannot start from: why, and what the node held with it. */
interface Unrestorable {
  readonly reason: string;
  readonly lost: LostLog;
  readonly membership?: Membership;
}

/**
 * The state the node starts from: its storage's (bootstrapped if empty and asked), with the
 * state machine restored from the snapshot. A newest snapshot that cannot be read or restored
 * (written by another version, damaged, planted; a received one is checked before it is saved)
 * is set aside, and the node opens from an older snapshot on disk that its log continues, with
 * that log; failing that, it loses its log (setAside).
 */
async function restoreState(options: DriverOptions, io: DriverIo): Promise<RaftRestore> {
  const { storage } = io;
  for (;;) {
    let failed: Unrestorable;
    const unreadable = storage.unreadableSnapshot();
    if (unreadable) {
      const { index, reason, hardState, entries } = unreadable;
      failed = { reason, lost: { hardState, snapshot: { index }, entries } };
    } else {
      let restored = storage.restore();
      const empty =
        restored.hardState.term === 0 && !restored.snapshot && restored.entries.length === 0;
      if (empty && options.bootstrap) {
        restored = RaftCore.bootstrap(options.id);
        await storage.save(restored);
      }
      const { snapshot, hardState, entries } = restored;
      if (!snapshot) return restored;
      try {
        // The checks a snapshot received from a peer gets: a file on disk is trusted no more.
        options.stateMachine.check?.(snapshot.data);
        options.stateMachine.restore(snapshot.data);
        return restored;
      } catch (error) {
        const { index, term, membership } = snapshot.meta;
        failed = {
          reason: errorMessage(error),
          lost: { hardState, snapshot: { index, term }, entries },
          membership,
        };
      }
    }
    const cannot = `raft node ${options.id}: the snapshot at index ${failed.lost.snapshot.index} in its storage cannot be restored: ${failed.reason}`;
    const older = await storage.fallBackToOlderSnapshot();
    if (!older) return setAside(options, io, failed, cannot);
    // Nothing is lost: the older snapshot and the log after it hold everything the node had.
    (options.warn ?? console.warn)(
      `${cannot}; set it aside as ${older.setAside.join(" and ")} and opens from the snapshot at index ${older.restored.snapshot.meta.index} and the log after it`,
    );
  }
}

/**
 * No snapshot on disk can serve: the node's state must come from the leader again. Sets the
 * snapshots aside, discards the log that depended on them and returns the state to start from,
 * which keeps the node out of elections until its log is back (RaftCore.afterLostLog). A node
 * that is its cluster's only voter, as far as its log or the snapshot tell, has nobody to catch
 * up from: it refuses to start instead and changes nothing. The state machine is still empty
 * here: check refused the snapshot before restore changed anything.
 */
async function setAside(
  options: DriverOptions,
  io: DriverIo,
  { lost, membership: snapshotMembership }: Unrestorable,
  cannot: string,
): Promise<RaftRestore> {
  const { id } = options;
  const conf = lost.entries.findLast((entry) => entry.kind === "membership");
  const membership = conf ? decodeMembershipEntry(conf.data).membership : snapshotMembership;
  if (membership?.voters.length === 1 && membership.voters[0] === id) {
    throw new Error(
      `${cannot}; this node is its cluster's only voter, so no other node holds that state: restore the data directory from a backup`,
    );
  }
  const restored = RaftCore.afterLostLog(lost);
  const path = await io.storage.setAsideSnapshot(restored.hardState);
  const point = restored.hardState.recovering!;
  (options.warn ?? console.warn)(
    `${cannot}; set it aside as ${path}, discarded its log and catches up from the leader, without voting until its log reaches index ${point.index} of term ${point.term}`,
  );
  return restored;
}

/** A proposal's entry was replaced by another leader's entry: it never took effect. Safe to retry. */
export class ProposalLostError extends Error {
  override name = "ProposalLostError";
}

interface Waiter<T> {
  readonly resolve: (value: T) => void;
  readonly reject: (error: unknown) => void;
}

/** A caller waiting for its proposal to apply. */
interface ProposalWaiter extends Waiter<unknown> {
  readonly term: number;
}

/** A caller waiting for a read barrier (the core's PendingRead is the leader's side of it). */
interface ReadWaiter extends Waiter<void> {
  /** Set once the leader confirmed the read: it may be served when applied reaches it. */
  index?: number;
  readonly deadlineTick: number;
}

export class Driver implements RaftNode {
  /**
   * Restores the node from `io.storage` (bootstrapping an empty one if asked), restores the state
   * machine from the snapshot, and starts ticking. Called on a subclass, builds that subclass
   * (tests break a driver on purpose that way).
   */
  static async open<D extends Driver>(
    this: new (
      options: DriverOptions,
      io: DriverIo,
      restored: RaftRestore,
    ) => D,
    options: DriverOptions,
    io: DriverIo,
  ): Promise<D> {
    const restored = await restoreState(options, io);
    const driver = new this(options, io, restored);
    driver.start();
    return driver;
  }

  readonly id: NodeId;
  private readonly core: RaftCore;
  private readonly settings: Settings;
  private readonly stateMachine: StateMachine;
  private readonly warn: (message: string) => void;
  private readonly onFatal: ((error: Error) => void) | undefined;
  /** The last refused snapshot ("from/term/index"), so a resent one is not logged again. */
  private lastRefusedSnapshot = "";
  private stopTicking: Cancel | undefined;
  private cancelCommitNews: Cancel | undefined;

  private loopActive = false;
  private loopDone: Promise<void> = Promise.resolve();
  private stopped = false;
  private ticks = 0;
  private applied: number;
  private snapshotIndex: number;
  private leader: NodeId = NONE;
  /** Term and vote as last handed to storage, and whether the current Ready changes them. */
  private durableTerm: number;
  private durableVote: NodeId;
  private voteChanged = false;

  private readonly proposals = new Map<number, ProposalWaiter>();
  private readonly reads = new Map<number, ReadWaiter>();
  private nextReadCtx = 1;
  private readonly tickListeners = new Set<() => void>();
  /** Woken by every tick and every inbound message: waits that depend on a peer's progress. */
  private readonly stepListeners = new Set<() => void>();
  private readonly leaderListeners = new Set<(leader: NodeId, role: Role) => void>();
  /** Membership changes run one at a time. */
  private readonly membershipChanges = new SerialQueue();

  constructor(
    options: DriverOptions,
    protected readonly io: DriverIo,
    restored: RaftRestore,
  ) {
    this.id = options.id;
    this.stateMachine = options.stateMachine;
    this.warn = options.warn ?? console.warn;
    this.onFatal = options.onFatal;
    this.settings = {
      tickMs: options.tickMs ?? RAFT_DEFAULTS.tickMs,
      heartbeatTicks: options.heartbeatTicks ?? RAFT_DEFAULTS.heartbeatTicks,
      electionTicks: options.electionTicks ?? RAFT_DEFAULTS.electionTicks,
      snapshotEvery: options.snapshotEvery ?? RAFT_DEFAULTS.snapshotEvery,
      commitNewsMs: options.commitNewsMs ?? RAFT_DEFAULTS.commitNewsMs,
      catchUpEntries: options.catchUpEntries ?? RAFT_DEFAULTS.catchUpEntries,
      catchUpTimeoutMs: options.catchUpTimeoutMs ?? RAFT_DEFAULTS.catchUpTimeoutMs,
    };
    this.core = new RaftCore(
      {
        id: options.id,
        electionTicks: this.settings.electionTicks,
        heartbeatTicks: this.settings.heartbeatTicks,
        random: options.random ?? Math.random,
        maxInflight: options.maxInflight,
        maxBatchEntries: options.maxBatchEntries,
        maxBatchBytes: options.maxBatchBytes,
        preVote: options.preVote,
        checkQuorum: options.checkQuorum,
      },
      restored,
    );
    const snapshotIndex = restored.snapshot?.meta.index ?? 0;
    this.applied = snapshotIndex;
    this.snapshotIndex = snapshotIndex;
    this.durableTerm = restored.hardState.term;
    this.durableVote = restored.hardState.vote;
  }

  private start(): void {
    this.stopTicking = this.io.clock.every(this.settings.tickMs, () => this.tick());
    this.kick();
  }

  /**
   * An inbound message from the transport, which validated its shape (frames.ts). The core
   * throws only when an invariant broke (an AssertionError): the node stops rather than go on
   * from a state Raft says cannot happen.
   */
  receive(message: Message): void {
    if (this.stopped) return;
    if (message.type === "snapshot" && !this.acceptable(message)) return;
    try {
      this.core.step(message);
    } catch (error) {
      this.fail(error);
      return;
    }
    for (const listener of [...this.stepListeners]) listener();
    this.kick();
  }

  /**
   * Whether the state machine accepts a received snapshot's data. A refused snapshot is dropped
   * before Raft sees it: nothing is persisted, term and log stay as they were, and the node keeps
   * serving its current state (a leader resends, so the line is written once per snapshot).
   */
  private acceptable(message: Extract<Message, { type: "snapshot" }>): boolean {
    const data = message.snapshot?.data;
    // The core drops a snapshot without data or meta on its own.
    if (!(data instanceof Uint8Array) || !this.stateMachine.check) return true;
    try {
      this.stateMachine.check(data);
      return true;
    } catch (error) {
      const key = `${message.from}/${message.term}/${message.snapshot.meta?.index}`;
      if (key !== this.lastRefusedSnapshot) {
        this.lastRefusedSnapshot = key;
        this.warn(
          `raft node ${this.id}: refused a snapshot from node ${message.from} (term ${message.term}, index ${message.snapshot.meta?.index}): ${errorMessage(error)}`,
        );
      }
      return false;
    }
  }

  private tick(): void {
    this.ticks++;
    this.core.tick();
    for (const listener of [...this.tickListeners, ...this.stepListeners]) listener();
    for (const [ctx, read] of this.reads) {
      if (read.index === undefined && this.ticks >= read.deadlineTick) {
        this.reads.delete(ctx);
        read.reject(new NotLeaderError(this.leader));
      }
    }
    this.kick();
  }

  // ---- the Ready loop ------------------------------------------------------------------------

  /**
   * Runs the Ready loop once the event loop has handled every message and request that is
   * already waiting (setImmediate runs after the poll phase), so they are batched into one
   * Ready and one sync. A microtask would run after the first of them alone.
   */
  private kick(): void {
    if (this.loopActive || this.stopped) return;
    this.loopActive = true;
    this.loopDone = new Promise<void>((resolve) => this.io.clock.soon(resolve)).then(() =>
      this.runLoop(),
    );
  }

  private async runLoop(): Promise<void> {
    try {
      while (!this.stopped && this.core.hasReady()) {
        const ready = this.core.ready();
        if (this.mustSync(ready)) {
          const early = this.earlyMessages(ready);
          this.io.transport.send(early);
          await this.persist(ready);
          if (this.stopped) return;
          this.io.transport.send(ready.messages.filter((m) => !early.includes(m)));
          this.apply(ready);
        } else {
          this.apply(ready);
          // Callers whose proposals just applied answer their clients before this Ready's
          // messages and commit record leave: those lose a microtask, each answer gains the
          // time of their writes.
          await Promise.resolve();
          if (this.stopped) return;
          if (ready.hardState) {
            this.io.storage.save(ready, { sync: false }).catch((error) => this.fail(error));
          }
          this.io.transport.send(ready.messages);
        }
        this.core.advance(ready);
        this.serveReads();
        await this.maybeSnapshot();
      }
    } catch (error) {
      this.fail(error);
    } finally {
      this.loopActive = false;
    }
    if (!this.cancelCommitNews && !this.stopped && this.core.hasCommitNews()) {
      this.cancelCommitNews = this.io.clock.after(this.settings.commitNewsMs, () => {
        this.cancelCommitNews = undefined;
        this.core.announceCommit();
        this.kick();
      });
    }
  }

  private fail(error: unknown): void {
    if (this.stopped) return;
    const failure = error instanceof Error ? error : new Error(errorMessage(error));
    this.warn(`raft node ${this.id} stopped: ${failure.message}`);
    void this.shutdown(failure).then(() => this.onFatal?.(failure));
  }

  /** Whether the Ready holds something that must be on disk before it goes on; notes term and vote. */
  private mustSync(ready: Ready): boolean {
    const hs = ready.hardState;
    this.voteChanged =
      hs !== undefined && (hs.term !== this.durableTerm || hs.vote !== this.durableVote);
    if (hs) {
      this.durableTerm = hs.term;
      this.durableVote = hs.vote;
    }
    return this.voteChanged || ready.snapshot !== undefined || ready.entries.length > 0;
  }

  /** Persists a Ready's snapshot, entries and hard state; resolves once they are synced. */
  protected persist(ready: Ready): Promise<void> {
    return this.io.storage.save(ready);
  }

  /** A leader's replication messages that may leave before this Ready's fsync (see header). */
  protected earlyMessages(ready: Ready): readonly Message[] {
    const leading = (ready.softState?.leader ?? this.leader) === this.id;
    if (!leading || ready.snapshot || this.voteChanged) return [];
    const firstNew = ready.entries[0]?.index ?? Number.POSITIVE_INFINITY;
    return ready.messages.filter(
      (m) => (m.type === "append" || m.type === "heartbeat") && m.commit < firstNew,
    );
  }

  private apply(ready: Ready): void {
    if (ready.softState) {
      this.leader = ready.softState.leader;
      for (const listener of [...this.leaderListeners]) {
        listener(ready.softState.leader, ready.softState.role);
      }
    }
    if (ready.snapshot) {
      const { index } = ready.snapshot.meta;
      this.stateMachine.restore(ready.snapshot.data);
      this.applied = this.snapshotIndex = index;
      for (const [at, proposal] of this.proposals) {
        if (at > index) continue;
        this.proposals.delete(at);
        proposal.reject(
          new Error(
            `the outcome of the proposal at index ${at} is unknown: a snapshot replaced it`,
          ),
        );
      }
    }
    for (const entry of ready.committed) this.applyEntry(entry);
    for (const read of ready.reads) {
      const pending = this.reads.get(read.ctx);
      if (pending) pending.index = read.index;
    }
    for (const ctx of ready.failedReads) {
      this.reads.get(ctx)?.reject(new NotLeaderError(this.leader));
      this.reads.delete(ctx);
    }
  }

  private applyEntry(entry: Entry): void {
    let result: unknown;
    let failure: unknown;
    const command =
      entry.kind === "membership" ? decodeMembershipEntry(entry.data).command : entry.data;
    if (entry.kind !== "noop" && command !== undefined) {
      try {
        result = this.stateMachine.apply(entry.index, command);
      } catch (error) {
        failure = error;
      }
    }
    this.applied = entry.index;
    const proposal = this.proposals.get(entry.index);
    if (!proposal) return;
    this.proposals.delete(entry.index);
    if (proposal.term !== entry.term) {
      proposal.reject(
        new ProposalLostError(
          `the proposal at index ${entry.index} was lost (term ${entry.term} committed there, not ${proposal.term}); retry it`,
        ),
      );
    } else if (failure !== undefined) proposal.reject(failure);
    else proposal.resolve(result);
  }

  private serveReads(): void {
    for (const [ctx, read] of this.reads) {
      if (read.index !== undefined && read.index <= this.applied) {
        this.reads.delete(ctx);
        read.resolve();
      }
    }
  }

  private async maybeSnapshot(): Promise<void> {
    if (this.applied - this.snapshotIndex < this.settings.snapshotEvery) return;
    const snapshot = this.core.compact(this.applied, this.stateMachine.snapshot());
    // A snapshot from the leader, stepped in while this Ready was persisted, replaced the log.
    if (!snapshot) return;
    this.snapshotIndex = snapshot.meta.index;
    await this.io.storage.saveSnapshot(snapshot);
  }

  // ---- requests ------------------------------------------------------------------------------

  status(): RaftStatus {
    return this.core.status();
  }

  propose(data: Uint8Array): Promise<unknown> {
    return this.submit(() => this.core.propose(data));
  }

  private submit(append: () => { index: number; term: number }): Promise<unknown> {
    if (this.stopped) return Promise.reject(new Error(`raft node ${this.id} is stopped`));
    try {
      const { index, term } = append();
      const done = new Promise<unknown>((resolve, reject) => {
        this.proposals.set(index, { term, resolve, reject });
      });
      this.kick();
      return done;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  readBarrier(): Promise<void> {
    if (this.stopped) return Promise.reject(new Error(`raft node ${this.id} is stopped`));
    const ctx = this.nextReadCtx++;
    const done = new Promise<void>((resolve, reject) => {
      this.reads.set(ctx, {
        resolve,
        reject,
        deadlineTick: this.ticks + 2 * this.settings.electionTicks,
      });
    });
    this.core.readIndex(ctx);
    this.kick();
    return done;
  }

  addVoter(id: NodeId): Promise<void> {
    return this.membershipChanges.run(async () => {
      const { voters, learners } = this.core.status().membership;
      if (voters.includes(id)) return;
      if (!learners.includes(id)) await this.proposeChange({ op: "addLearner", id });
      await this.caughtUp(id);
      await this.proposeChange({ op: "promote", id });
    });
  }

  removeServer(id: NodeId, command?: Uint8Array): Promise<unknown> {
    return this.membershipChanges.run(() => this.removeMember(id, command));
  }

  removeLearner(id: NodeId, command: Uint8Array): Promise<unknown> {
    return this.membershipChanges.run(async () => {
      // Decided in the queue, after any promotion that was running: a finished join stays.
      if (this.core.status().membership.voters.includes(id)) return undefined;
      return this.removeMember(id, command);
    });
  }

  /** One removal, run inside the membership queue. */
  private removeMember(id: NodeId, command?: Uint8Array): Promise<unknown> {
    const { voters, learners } = this.core.status().membership;
    if (voters.includes(id) || learners.includes(id)) {
      return this.proposeChange({ op: "remove", id }, command);
    }
    // Not in the configuration (it never got that far): the command alone records the removal.
    return command === undefined ? Promise.resolve(undefined) : this.propose(command);
  }

  demoteVoter(id: NodeId): Promise<void> {
    return this.membershipChanges.run(async () => {
      if (this.core.status().membership.voters.includes(id)) {
        await this.proposeChange({ op: "demote", id });
      }
    });
  }

  /**
   * Proposes one single-server change as it is (addVoter adds the learner's catch-up) and
   * resolves once this leader applied it.
   */
  proposeMembership(change: MembershipChange): Promise<void> {
    return this.membershipChanges.run(async () => {
      await this.proposeChange(change);
    });
  }

  /**
   * Proposes a membership change and waits for it to apply. While this leader's first entry or
   * an earlier change is still uncommitted the core refuses with MembershipPendingError; that
   * passes within a few ticks, so only that refusal is retried.
   */
  private async proposeChange(change: MembershipChange, command?: Uint8Array): Promise<unknown> {
    const deadline = this.ticks + 2 * this.settings.electionTicks;
    for (;;) {
      try {
        return await this.submit(() => this.core.proposeMembership(change, command));
      } catch (error) {
        const pending = error instanceof MembershipPendingError;
        if (!pending || this.ticks >= deadline || this.stopped) throw error;
      }
      await this.nextTick();
    }
  }

  /** Waits until learner `id` is within catchUpEntries of this leader's log. */
  private async caughtUp(id: NodeId): Promise<void> {
    const slack = this.settings.catchUpEntries;
    const deadline = this.io.clock.now() + this.settings.catchUpTimeoutMs;
    for (;;) {
      const status = this.core.status();
      if (status.role !== "leader") throw new NotLeaderError(status.leader);
      const match = status.progress?.[id]?.match ?? 0;
      if (match > 0 && match + slack >= status.lastIndex) return;
      if (this.io.clock.now() > deadline) {
        throw new Error(
          `node ${id} did not catch up (match ${match}, leader at ${status.lastIndex}); check that it is running and reachable`,
        );
      }
      await this.nextStep();
    }
  }

  /** The next tick or inbound message, whichever comes first (a learner's acks arrive between ticks). */
  private nextStep(): Promise<void> {
    return this.next(this.stepListeners);
  }

  private nextTick(): Promise<void> {
    return this.next(this.tickListeners);
  }

  private next(listeners: Set<() => void>): Promise<void> {
    if (this.stopped) return Promise.reject(new Error(`raft node ${this.id} is stopped`));
    return new Promise((resolve) => {
      const listener = () => {
        listeners.delete(listener);
        resolve();
      };
      listeners.add(listener);
    });
  }

  transferLeadership(to: NodeId): Promise<void> {
    if (this.stopped) return Promise.reject(new Error(`raft node ${this.id} is stopped`));
    try {
      this.core.transferLeadership(to);
    } catch (error) {
      return Promise.reject(error);
    }
    this.kick();
    return new Promise((resolve, reject) => {
      const deadline = this.ticks + 2 * this.settings.electionTicks;
      const check = () => {
        if (this.leader === to || this.stopped || this.ticks >= deadline) {
          this.tickListeners.delete(check);
          if (this.leader === to) resolve();
          else
            reject(new Error(`leadership did not move to node ${to} (leader is ${this.leader})`));
        }
      };
      this.tickListeners.add(check);
    });
  }

  onLeaderChange(listener: (leader: NodeId, role: Role) => void): () => void {
    this.leaderListeners.add(listener);
    return () => this.leaderListeners.delete(listener);
  }

  stop(): Promise<void> {
    return this.shutdown(new Error(`raft node ${this.id} is stopped`));
  }

  private async shutdown(reason: unknown): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.stopTicking?.();
    this.cancelCommitNews?.();
    await this.io.transport.close();
    await this.loopDone.catch(() => {});
    await this.io.storage.close();
    for (const waiter of [...this.proposals.values(), ...this.reads.values()])
      waiter.reject(reason);
    this.proposals.clear();
    this.reads.clear();
    for (const listener of [...this.tickListeners, ...this.stepListeners]) listener();
  }
}
