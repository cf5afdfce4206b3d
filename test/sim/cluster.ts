/**
 * A simulated Raft cluster: N RaftCores, each with a SimDisk and a KvMachine, joined by a
 * SimNetwork and driven tick by tick on a virtual clock. The driver follows the Ready contract
 * (persist and sync, then send, then apply, then advance), and offers what tests need: client
 * writes (propose) and reads (ReadIndex) recorded as a history, crashes and restarts, membership
 * changes, snapshots every K applied entries. Invariants are checked at every event and step; a
 * failure carries the seed, the replay command and the last events of the schedule.
 * Owns: the drive loop and the client history. Must not touch: Raft decisions (the core's).
 */

import { RaftCore, type RaftRestore } from "../../lib/raft/core.ts";
import { decodeMembership, encodeMembership } from "../../lib/raft/membership.ts";
import {
  type Entry,
  type MembershipChange,
  type Message,
  type NodeId,
  NotLeaderError,
  type RaftStatus,
  type Ready,
  type Role,
} from "../../lib/raft/types.ts";
import { VirtualClock } from "./clock.ts";
import { type CrashMode, type DiskState, EMPTY_HARD_STATE, SimDisk, termAt } from "./disk.ts";
import { Invariants, InvariantViolation } from "./invariants.ts";
import { decodeCommand, encodeCommand, KvMachine } from "./kv.ts";
import { checkKvHistory, type KvInput, type KvOutput, type Operation } from "./linearizability.ts";
import { type LinkFaults, RELIABLE, SimNetwork } from "./network.ts";
import { Prng } from "./prng.ts";

export interface ClusterOptions {
  readonly seed: number;
  readonly electionTicks?: number;
  readonly heartbeatTicks?: number;
  /** Passed to the core; small values exercise flow control and batching edges. */
  readonly maxInflight?: number;
  readonly maxBatchEntries?: number;
  readonly preVote?: boolean;
  readonly checkQuorum?: boolean;
  /** Compact the log after this many applied entries; 0 never compacts. */
  readonly snapshotEvery?: number;
  readonly links?: LinkFaults;
  /** The command that replays this run, printed with every failure. */
  readonly replay?: string;
  /** How many of the latest events a failure prints. */
  readonly eventsShown?: number;
  /**
   * "strict" (default) follows the Ready contract to the letter: sync every Ready before sending.
   * "mill" models the refinements of lib/raft/driver.ts: a Ready that only moves the commit
   * index is not synced, and a leader's appends and heartbeats whose commit is below the Ready's
   * first new entry leave before the sync.
   */
  readonly driver?: "strict" | "mill";
  /**
   * Breaks the driver on purpose, to prove the checks catch it. "sendsBeforeSync": a node armed
   * to crash before its sync still sends that Ready's messages first. "readsLocally": reads are
   * served from the local state machine at once, without ReadIndex.
   */
  readonly brokenDriver?: "sendsBeforeSync" | "readsLocally";
}

/** A client operation; `ret` stays undefined while pending (and forever if its fate is unknown). */
export interface ClientOp extends Operation {
  readonly id: number;
  readonly node: NodeId;
  ret?: number;
  output?: KvOutput;
  /**
   * Known not to have taken effect (another entry committed at its index, or a read its node
   * or its client gave up on): left out of the history.
   */
  failed?: boolean;
  /** Its proposer no longer tracks it (crashed, or proposed anew at its index): pending until applied anywhere. */
  orphaned?: boolean;
}

export class SimFailure extends Error {
  override name = "SimFailure";
}

export class SimNode {
  core: RaftCore | undefined;
  kv = new KvMachine();
  applied = 0;
  /** index -> the client operation this node proposed there. */
  proposals = new Map<number, ClientOp>();
  /** ReadIndex ctx -> the read waiting for its read state. */
  reads = new Map<number, ClientOp>();
  /** Reads that know their index and wait for the state machine to reach it. */
  readyReads: { index: number; op: ClientOp }[] = [];
  /** The leader this node last reported (Ready.softState). */
  leader: NodeId = 0;
  /** An armed fault: crash right after writing the next Ready, before syncing it. */
  crashBeforeSync: CrashMode | undefined;
  role: Role | "down" = "follower";

  constructor(
    readonly id: NodeId,
    readonly disk: SimDisk,
  ) {}

  get up(): boolean {
    return this.core !== undefined;
  }
}

export class SimCluster {
  readonly prng: Prng;
  readonly clock = new VirtualClock();
  readonly network: SimNetwork;
  readonly invariants = new Invariants();
  readonly nodes = new Map<NodeId, SimNode>();
  readonly history: ClientOp[] = [];
  /** Writes and compare-and-sets by id, to learn their fate wherever they are applied. */
  private readonly writes = new Map<number, ClientOp>();
  private readonly events: string[] = [];
  /** Messages delivered so far, by type. */
  readonly delivered: Partial<Record<Message["type"], number>> = {};
  /** Called with each message just before it is delivered (scenarios arm faults here). */
  onDeliver: ((message: Message) => void) | undefined;
  private readonly eventsShown: number;
  private nextOpId = 0;
  private nextReadCtx = 0;
  readonly options: Required<
    Omit<ClusterOptions, "links" | "replay" | "eventsShown" | "brokenDriver">
  > & {
    replay: string;
    brokenDriver?: ClusterOptions["brokenDriver"];
  };

  constructor(options: ClusterOptions) {
    this.prng = new Prng(options.seed);
    this.network = new SimNetwork(this.prng.fork(), options.links ?? RELIABLE);
    this.eventsShown = options.eventsShown ?? 50;
    this.options = {
      seed: options.seed,
      electionTicks: options.electionTicks ?? 10,
      heartbeatTicks: options.heartbeatTicks ?? 1,
      maxInflight: options.maxInflight ?? 64,
      maxBatchEntries: options.maxBatchEntries ?? 256,
      preVote: options.preVote ?? true,
      checkQuorum: options.checkQuorum ?? true,
      snapshotEvery: options.snapshotEvery ?? 0,
      driver: options.driver ?? "strict",
      replay:
        options.replay ??
        `SIM_SEED=${options.seed} node --import tsx --test test/sim/random.test.ts`,
      ...(options.brokenDriver ? { brokenDriver: options.brokenDriver } : {}),
    };
  }

  /** A cluster of `voters` nodes formed the way Mill forms one: bootstrap node 1, add the rest one by one. */
  static form(voters: number, options: ClusterOptions): SimCluster {
    const cluster = new SimCluster(options);
    cluster.guard(() => {
      cluster.start(1, RaftCore.bootstrap(1));
      cluster.runUntil(
        () => cluster.leader() === 1,
        20 * cluster.options.electionTicks,
        "node 1 to lead",
      );
      for (let id = 2; id <= voters; id++) cluster.addVoter(id);
    });
    return cluster;
  }

  /** A cluster whose `voters` nodes all start at once from the same one-entry configuration. */
  static withVoters(voters: number, options: ClusterOptions): SimCluster {
    const cluster = new SimCluster(options);
    const ids = Array.from({ length: voters }, (_, i) => i + 1);
    const data = encodeMembership({ voters: ids, learners: [] });
    cluster.guard(() => {
      for (const id of ids) {
        cluster.start(id, {
          hardState: { term: 1, vote: 0, commit: 1 },
          entries: [{ index: 1, term: 1, kind: "membership", data }],
        });
      }
      cluster.runUntil(
        () => cluster.leader() !== 0,
        20 * cluster.options.electionTicks,
        "a leader",
      );
    });
    return cluster;
  }

  // ---- nodes -------------------------------------------------------------------------------

  /** Starts a node that has never run: from `restore`, or empty (waiting to be added). */
  start(id: NodeId, restore: RaftRestore = { hardState: EMPTY_HARD_STATE, entries: [] }): SimNode {
    if (this.nodes.has(id)) throw new Error(`node ${id} already exists`);
    const node = new SimNode(id, new SimDisk(restore));
    this.nodes.set(id, node);
    this.boot(node);
    return node;
  }

  crash(id: NodeId, mode: CrashMode = "loseUnsynced"): void {
    const node = this.node(id);
    if (!node.up) return;
    const lost = node.disk.crash(mode, this.prng);
    node.core = undefined;
    node.crashBeforeSync = undefined;
    for (const op of node.proposals.values()) op.orphaned = true;
    for (const op of node.reads.values()) op.failed = true;
    for (const { op } of node.readyReads) op.failed = true;
    node.proposals.clear();
    node.reads.clear();
    node.readyReads = [];
    node.role = "down";
    node.leader = 0;
    this.invariants.onStopped(id);
    this.event(`crash n${id} (${mode}, ${lost} unsynced records lost)`);
  }

  restart(id: NodeId): void {
    const node = this.node(id);
    if (node.up) return;
    this.guard(() => this.boot(node));
  }

  private boot(node: SimNode): void {
    const restore = node.disk.restore();
    const random = this.prng.fork();
    const { electionTicks, heartbeatTicks, preVote, checkQuorum, maxInflight, maxBatchEntries } =
      this.options;
    node.core = new RaftCore(
      {
        id: node.id,
        electionTicks,
        heartbeatTicks,
        preVote,
        checkQuorum,
        maxInflight,
        maxBatchEntries,
        random: () => random.float(),
      },
      restore,
    );
    node.kv = new KvMachine();
    node.applied = 0;
    node.role = "follower";
    node.leader = 0;
    this.invariants.onRestart(node.id, node.core.status(), restore.hardState);
    if (restore.snapshot)
      this.restoreSnapshot(node, restore.snapshot.meta.index, restore.snapshot.data);
    this.event(
      `start n${node.id} term ${restore.hardState.term} commit ${restore.hardState.commit}`,
    );
    this.drain(node);
  }

  node(id: NodeId): SimNode {
    const node = this.nodes.get(id);
    if (!node) throw new Error(`no node ${id} in the simulation`);
    return node;
  }

  up(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.up);
  }

  status(id: NodeId): RaftStatus {
    const core = this.node(id).core;
    if (!core) throw new Error(`node ${id} is down`);
    return core.status();
  }

  /** The running leader of the highest term, or 0. */
  leader(): NodeId {
    let best: RaftStatus | undefined;
    for (const node of this.up()) {
      const status = node.core!.status();
      if (status.role === "leader" && (!best || status.term > best.term)) best = status;
    }
    return best?.id ?? 0;
  }

  // ---- time --------------------------------------------------------------------------------

  /** One tick: deliver what is due, tick every running node, check every invariant. */
  step(): void {
    this.guard(() => {
      const now = this.clock.advance();
      for (const message of this.network.deliverDue(now)) {
        const node = this.nodes.get(message.to);
        if (!node?.core) continue;
        this.onDeliver?.(message);
        if (!node.core) continue;
        this.delivered[message.type] = (this.delivered[message.type] ?? 0) + 1;
        this.event(describe(message));
        node.core.step(message);
        this.drain(node);
      }
      for (const node of this.prng.shuffle(this.up())) {
        // The driver announces a commit index no append carried a few ms after going idle.
        node.core!.announceCommit();
        node.core!.tick();
        this.drain(node);
      }
      for (const node of this.up()) {
        this.invariants.onStatus(node.core!.status(), node.applied, node.disk.state);
      }
    });
  }

  run(ticks: number): void {
    for (let i = 0; i < ticks; i++) this.step();
  }

  /** Steps until `done()` holds; fails after `maxTicks` ticks, naming `what` it waited for. */
  runUntil(done: () => boolean, maxTicks: number, what: string): number {
    for (let ticks = 0; ticks <= maxTicks; ticks++) {
      if (done()) return ticks;
      this.step();
    }
    throw this.failure(new Error(`timed out after ${maxTicks} ticks waiting for ${what}`));
  }

  // ---- the Ready loop ----------------------------------------------------------------------

  private drain(node: SimNode): void {
    while (node.core?.hasReady()) this.handleReady(node, node.core.ready());
  }

  private handleReady(node: SimNode, ready: Ready): void {
    const core = node.core!;
    const { disk } = node;
    if (ready.snapshot) disk.write({ kind: "snapshot", snapshot: ready.snapshot });
    if (ready.entries.length > 0) {
      disk.write({ kind: "entries", entries: ready.entries });
      this.invariants.onAppend(node.id, disk.state, ready.entries);
    }
    const durable = disk.state.hardState;
    const hardState = ready.hardState;
    const voteChanged =
      hardState !== undefined &&
      (hardState.term !== durable.term || hardState.vote !== durable.vote);
    if (hardState) disk.write({ kind: "hardState", hardState });
    if (ready.softState) node.leader = ready.softState.leader;
    const early = this.options.driver === "mill" ? earlyMessages(node, ready, voteChanged) : [];
    this.send(early);
    if (disk.dirty && node.crashBeforeSync) {
      if (this.options.brokenDriver === "sendsBeforeSync") this.send(ready.messages);
      this.crash(node.id, node.crashBeforeSync);
      return;
    }
    const mustSync = voteChanged || ready.snapshot !== undefined || ready.entries.length > 0;
    if (disk.dirty && (mustSync || this.options.driver === "strict")) disk.sync();
    this.send(early.length > 0 ? ready.messages.filter((m) => !early.includes(m)) : ready.messages);

    if (ready.snapshot) {
      this.restoreSnapshot(node, ready.snapshot.meta.index, ready.snapshot.data);
    }
    if (ready.committed.length > 0) {
      this.invariants.onCommitted(node.id, core.status().term, ready.committed);
      for (const entry of ready.committed) this.apply(node, entry);
    }
    for (const read of ready.reads) {
      const op = node.reads.get(read.ctx);
      if (!op) continue;
      node.reads.delete(read.ctx);
      node.readyReads.push({ index: read.index, op });
    }
    for (const ctx of ready.failedReads) {
      const op = node.reads.get(ctx);
      node.reads.delete(ctx);
      if (op) op.failed = true;
    }
    this.serveReads(node);
    if (ready.softState && ready.softState.role !== node.role) {
      node.role = ready.softState.role;
      this.event(`n${node.id} is ${node.role} (leader ${ready.softState.leader})`);
    }
    core.advance(ready);
    this.compactIfDue(node);
  }

  private send(messages: readonly Message[]): void {
    for (const message of messages) {
      this.invariants.onSend(message);
      this.network.send(message, this.clock.now);
    }
  }

  private restoreSnapshot(node: SimNode, index: number, data: Uint8Array): void {
    node.kv.restore(data);
    node.applied = index;
    // Proposals the snapshot covers have an unknown fate here: they stay pending.
    for (const proposed of node.proposals.keys())
      if (proposed <= index) node.proposals.delete(proposed);
    this.invariants.onRestored(node.id, index, node.kv.digest);
  }

  private apply(node: SimNode, entry: Entry): void {
    node.applied = entry.index;
    const proposal = node.proposals.get(entry.index);
    node.proposals.delete(entry.index);
    if (entry.kind !== "command") {
      node.kv.skip(entry.index);
      this.invariants.onApplied(node.id, entry.index, node.kv.digest);
      if (proposal) proposal.failed = true;
      return;
    }
    const output = node.kv.apply(entry.index, entry.data);
    this.invariants.onApplied(node.id, entry.index, node.kv.digest);
    const { id } = decodeCommand(entry.data);
    this.invariants.onCommandApplied(node.id, id, entry.index);
    const op = this.writes.get(id);
    if (!op)
      throw new InvariantViolation(`node ${node.id} applied command ${id} that no client sent`);
    if (op.failed) {
      throw new InvariantViolation(
        `node ${node.id} applied command ${id} at ${entry.index}, yet its proposer applied another entry there`,
      );
    }
    // Applied anywhere means it took effect by now: the earliest valid moment for its answer.
    if (op.ret === undefined) {
      op.ret = this.clock.stamp();
      op.output = output;
    }
    if (proposal && proposal !== op) proposal.failed = true;
  }

  private serveReads(node: SimNode): void {
    node.readyReads = node.readyReads.filter(({ index, op }) => {
      if (node.applied < index) return true;
      // A read its client gave up on stays out of the history.
      if (op.failed) return false;
      op.ret = this.clock.stamp();
      op.output = { value: node.kv.get(op.input.key) };
      return false;
    });
  }

  private compactIfDue(node: SimNode): void {
    const every = this.options.snapshotEvery;
    const compacted = node.disk.state.snapshot?.meta.index ?? 0;
    if (every <= 0 || node.applied - compacted < every || !node.core) return;
    const snapshot = node.core.compact(node.applied, node.kv.snapshot());
    node.disk.write({ kind: "compaction", snapshot });
    node.disk.sync();
    this.event(`n${node.id} compacted to ${snapshot.meta.index}`);
  }

  // ---- clients -----------------------------------------------------------------------------

  /** Submits a client operation at node `id`; undefined when that node refused it (not leader). */
  submit(id: NodeId, input: KvInput, client = 0): ClientOp | undefined {
    return this.guard(() => {
      const node = this.node(id);
      if (!node.core) return undefined;
      const op: ClientOp = {
        id: ++this.nextOpId,
        client,
        node: id,
        input,
        call: this.clock.stamp(),
      };
      try {
        if (input.op === "read" && this.options.brokenDriver === "readsLocally") {
          node.readyReads.push({ index: 0, op });
        } else if (input.op === "read") {
          const ctx = ++this.nextReadCtx;
          node.core.readIndex(ctx);
          node.reads.set(ctx, op);
        } else {
          const { index } = node.core.propose(encodeCommand(op.id, input));
          const replaced = node.proposals.get(index);
          if (replaced) replaced.orphaned = true;
          node.proposals.set(index, op);
          this.writes.set(op.id, op);
        }
      } catch (error) {
        if (error instanceof NotLeaderError) return undefined;
        throw error;
      }
      this.history.push(op);
      this.event(`client ${client} -> n${id} ${describeInput(input)}`);
      this.serveReads(node);
      this.drain(node);
      return op;
    });
  }

  /**
   * Submits at node `at` (default: the leader) and steps until the operation returns. Throws
   * when the node refuses it or it does not return within `maxTicks`.
   */
  perform(
    input: KvInput,
    at = this.leader(),
    maxTicks = 30 * this.options.electionTicks,
  ): ClientOp {
    const op = this.submit(at, input);
    if (!op) throw this.failure(new Error(`node ${at} refused ${describeInput(input)}`));
    this.runUntil(
      () => op.ret !== undefined || op.failed === true,
      maxTicks,
      `${describeInput(input)} at node ${at} to return`,
    );
    if (op.failed) throw this.failure(new Error(`${describeInput(input)} at node ${at} failed`));
    return op;
  }

  /** Steps until every running member has applied all that the leader committed; returns ticks. */
  awaitConvergence(maxTicks = 50 * this.options.electionTicks): number {
    return this.runUntil(
      () => {
        const leader = this.leader();
        if (!leader) return false;
        const { commit, membership } = this.status(leader);
        const members = [...membership.voters, ...membership.learners];
        return members.every((id) => !this.nodes.get(id)?.up || this.node(id).applied >= commit);
      },
      maxTicks,
      "every running member to apply the leader's commit",
    );
  }

  /**
   * Proposes a membership change at the leader (retrying while the leader is not ready for it)
   * and waits until the leader applied it.
   */
  changeMembership(change: MembershipChange, maxTicks = 50 * this.options.electionTicks): void {
    this.guard(() => {
      let proposed: { leader: SimNode; index: number; term: number } | undefined;
      this.runUntil(
        () => {
          if (!proposed) {
            const leaderId = this.leader();
            if (!leaderId) return false;
            const leader = this.node(leaderId);
            try {
              proposed = { leader, ...leader.core!.proposeMembership(change) };
            } catch (error) {
              // The leader's first entry or the previous change has not committed yet.
              if (error instanceof NotLeaderError || /retry/.test(String(error))) return false;
              throw error;
            }
            this.event(`n${leaderId} proposes ${change.op} n${change.id} at ${proposed.index}`);
            this.drain(leader);
          }
          const { leader, index, term } = proposed;
          if (leader.applied < index) {
            // A deposed proposer may never apply it: propose again at the new leader.
            if (!leader.up || leader.core!.status().role !== "leader") proposed = undefined;
            return false;
          }
          return (
            termAt(leader.disk.state, index) === term || leader.disk.state.snapshot !== undefined
          );
        },
        maxTicks,
        `${change.op} of node ${change.id} to commit`,
      );
    });
  }

  /** Adds node `id` as a learner, waits until it caught up, then promotes it. */
  addVoter(id: NodeId): void {
    if (!this.nodes.has(id)) this.start(id);
    this.changeMembership({ op: "addLearner", id });
    const learner = this.node(id);
    this.runUntil(
      () => learner.applied >= this.node(this.leader() || 1).applied,
      50 * this.options.electionTicks,
      `learner ${id} to catch up`,
    );
    this.changeMembership({ op: "promote", id });
  }

  /**
   * Liveness: heals the network, restarts every crashed node but those in `keepDown` (which are
   * crashed), and requires a leader to commit a fresh write within `maxTicks`. Returns the ticks
   * it took. Keep down only what leaves a majority of every configuration alive
   * (survivableDowns), or nothing can be required.
   */
  awaitProgress(
    maxTicks = 30 * this.options.electionTicks,
    keepDown: readonly NodeId[] = [],
  ): number {
    this.network.heal();
    this.network.faults = RELIABLE;
    for (const node of this.nodes.values()) {
      node.crashBeforeSync = undefined;
      if (keepDown.includes(node.id)) this.crash(node.id);
      else if (!node.up) this.restart(node.id);
    }
    this.event(`faults healed${keepDown.length > 0 ? `, nodes ${keepDown} kept down` : ""}`);
    let probe: ClientOp | undefined;
    const value = `probe@${this.clock.now}`;
    return this.runUntil(
      () => {
        if (probe?.ret !== undefined) return true;
        const leader = this.leader();
        if (leader && (!probe || probe.node !== leader)) {
          probe = this.submit(leader, { op: "write", key: "probe", value }, -1);
        }
        return false;
      },
      maxTicks,
      "a leader to commit a write after faults healed",
    );
  }

  /**
   * A random set of nodes (at most `max`) that may stay down while progress is still owed: every
   * configuration found in any node's log keeps a majority of its voters outside the set.
   */
  survivableDowns(max: number): NodeId[] {
    const configs = [...this.nodes.values()].map((node) => latestVoters(node.disk.state));
    const down: NodeId[] = [];
    for (const id of this.prng.shuffle([...this.nodes.keys()])) {
      if (down.length >= max) break;
      const trial = [...down, id];
      const survives = configs.every(
        (voters) => voters.filter((v) => !trial.includes(v)).length > voters.length / 2,
      );
      if (survives) down.push(id);
    }
    return down;
  }

  /**
   * Checks the client history for linearizability. A write still pending was never applied
   * anywhere (applying it answers it), so no read saw it: it is left out with the failed ones.
   */
  checkLinearizable(): void {
    const history = this.history.filter((op) => !op.failed && op.ret !== undefined);
    const result = checkKvHistory(history);
    if (!result.ok) {
      const lines = result.history.map(
        (o) =>
          `  client ${o.client} ${describeInput(o.input)} [${o.call}, ${o.ret ?? "pending"}] -> ${JSON.stringify(o.output)}`,
      );
      throw this.failure(
        new InvariantViolation(
          `history of key ${result.key} is not linearizable; stuck at client ${result.stuckAt.client} ` +
            `${describeInput(result.stuckAt.input)}:\n${lines.slice(-40).join("\n")}`,
        ),
      );
    }
  }

  // ---- failures ----------------------------------------------------------------------------

  event(text: string): void {
    this.events.push(`t${this.clock.now} ${text}`);
    if (this.events.length > 2 * this.eventsShown) this.events.splice(0, this.eventsShown);
  }

  /** Wraps an error with the seed, the replay command and the latest events. */
  failure(error: unknown): SimFailure {
    if (error instanceof SimFailure) return error;
    const reason = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    const failure = new SimFailure(
      `${reason}\nseed=${this.options.seed}\nreplay: ${this.options.replay}\n` +
        `last ${this.eventsShown} events:\n  ${this.events.slice(-this.eventsShown).join("\n  ")}`,
    );
    if (error instanceof Error) failure.stack = `${failure.message}\n${error.stack ?? ""}`;
    return failure;
  }

  guard<T>(body: () => T): T {
    try {
      return body();
    } catch (error) {
      throw this.failure(error);
    }
  }
}

/** The voters of the newest configuration in a log (its last membership entry, else its snapshot's). */
function latestVoters(log: Readonly<DiskState>): readonly NodeId[] {
  for (let i = log.entries.length - 1; i >= 0; i--) {
    const entry = log.entries[i]!;
    if (entry.kind === "membership") return decodeMembership(entry.data).voters;
  }
  return log.snapshot?.meta.membership.voters ?? [];
}

/** The "mill" driver's messages that may leave before the sync (see ClusterOptions.driver). */
function earlyMessages(node: SimNode, ready: Ready, voteChanged: boolean): readonly Message[] {
  if (node.leader !== node.id || ready.snapshot || voteChanged) return [];
  const firstNew = ready.entries[0]?.index ?? Number.POSITIVE_INFINITY;
  return ready.messages.filter(
    (m) => (m.type === "append" || m.type === "heartbeat") && m.commit < firstNew,
  );
}

function describeInput(input: KvInput): string {
  switch (input.op) {
    case "read":
      return `read ${input.key}`;
    case "write":
      return `write ${input.key}=${input.value}`;
    case "cas":
      return `cas ${input.key} ${input.expect}->${input.value}`;
  }
}

function describe(m: Message): string {
  const head = `n${m.from}->n${m.to} ${m.type} t${m.term}`;
  switch (m.type) {
    case "append":
      return `${head} prev ${m.prevIndex}/${m.prevTerm} n=${m.entries.length} commit ${m.commit}`;
    case "appendResp":
      return `${head} ${m.reject ? `reject ${m.index} hint ${m.hintIndex}/${m.hintTerm}` : `ok ${m.index}`}`;
    case "vote":
    case "preVote":
      return `${head} last ${m.lastIndex}/${m.lastTerm}${m.transfer ? " transfer" : ""}`;
    case "voteResp":
    case "preVoteResp":
      return `${head} ${m.reject ? "reject" : "grant"}`;
    case "heartbeat":
      return `${head} commit ${m.commit} ctx ${m.ctx}`;
    case "snapshot":
      return `${head} at ${m.snapshot.meta.index}/${m.snapshot.meta.term}`;
    case "readIndexResp":
      return `${head} ctx ${m.ctx} index ${m.index}${m.reject ? " reject" : ""}`;
    default:
      return head;
  }
}
