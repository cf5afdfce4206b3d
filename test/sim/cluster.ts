/**
 * A simulated Raft cluster that runs the production driver: each node is a lib/raft/driver.ts
 * Driver over a SimDisk (as its RaftStorage), the SimNetwork (as its transport) and the
 * SimScheduler (as its Clock), applying to a KvMachine; the way TigerBeetle's cluster tests run
 * the production replica. The simulation offers what tests need: client writes (propose) and
 * reads (readBarrier) recorded as a history, crashes (at any moment, or at a node's next sync)
 * and restarts, membership changes through the driver's own calls, snapshots every K applied
 * entries. Invariants are checked at every write, send, apply and tick; a failure carries the
 * seed, the replay command and the last events of the schedule.
 * Owns: the simulated nodes, the client history. Must not touch: Raft decisions or the order of
 * persist, send and apply (the driver's).
 */

import { RaftCore, type RaftRestore } from "../../lib/raft/core.ts";
import { RAFT_DEFAULTS } from "../../lib/raft/defaults.ts";
import { Driver, type DriverIo, ProposalLostError } from "../../lib/raft/driver.ts";
import { decodeMembership, encodeMembership, isMember } from "../../lib/raft/membership.ts";
import {
  type Membership,
  type MembershipChange,
  type Message,
  type NodeId,
  NotLeaderError,
  type RaftStatus,
  type Role,
  type StateMachine,
} from "../../lib/raft/types.ts";
import { type Owner, SimScheduler } from "./clock.ts";
import {
  type CrashMode,
  type DiskState,
  EMPTY_HARD_STATE,
  lastIndex,
  SimDisk,
  type SnapshotDamage,
} from "./disk.ts";
import { Invariants, InvariantViolation } from "./invariants.ts";
import { encodeCommand, KvMachine } from "./kv.ts";
import { checkKvHistory, type KvInput, type KvOutput, type Operation } from "./linearizability.ts";
import { type LinkFaults, RELIABLE, SimNetwork } from "./network.ts";
import { Prng } from "./prng.ts";

/** The driver class a simulation runs: Driver, or a test's subclass that breaks it on purpose. */
export type DriverClass = typeof Driver;

export interface ClusterOptions {
  readonly seed: number;
  /** Virtual ms per Raft tick (the driver's tickMs). Default 10. */
  readonly tickMs?: number;
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
  /** Virtual ms a disk flush (write and fdatasync) takes, uniform in [min, max]. Default [0, 3]. */
  readonly diskLatency?: readonly [number, number];
  /** The command that replays this run, printed with every failure. */
  readonly replay?: string;
  /** How many of the latest events a failure prints. */
  readonly eventsShown?: number;
  /** Runs this driver instead of Driver: a deliberately broken one must be caught. */
  readonly driver?: DriverClass;
  /** Reads served from the local state machine at once, without ReadIndex (a broken read path). */
  readonly localReads?: boolean;
}

type Settings = Required<Omit<ClusterOptions, "links" | "replay" | "eventsShown">> & {
  readonly replay: string;
};

/** A client operation; `ret` stays undefined while pending (and forever if its fate is unknown). */
export interface ClientOp extends Operation {
  readonly id: number;
  readonly node: NodeId;
  ret?: number;
  output?: KvOutput;
  /**
   * Known not to have taken effect (its proposer was told another entry took its place, or a
   * read its node or its client gave up on): left out of the history.
   */
  failed?: boolean;
  /** Its proposer no longer tracks it (crashed, or a snapshot covered it): pending until applied anywhere. */
  orphaned?: boolean;
}

export class SimFailure extends Error {
  override name = "SimFailure";
}

export class SimNode {
  driver: Driver | undefined;
  kv = new KvMachine();
  /** The running incarnation: its timers, disk and network handles die with it. */
  owner: Owner = { alive: false };
  /** An armed fault: crash when the next sync would complete, losing what it would have synced. */
  crashBeforeSync: CrashMode | undefined;
  role: Role | "down" = "down";
  /** Client operations this incarnation has not answered yet. */
  readonly writes = new Set<ClientOp>();
  readonly reads = new Set<ClientOp>();

  constructor(
    readonly id: NodeId,
    readonly disk: SimDisk,
  ) {}

  get up(): boolean {
    return this.driver !== undefined;
  }
}

export class SimCluster {
  readonly prng: Prng;
  readonly scheduler: SimScheduler;
  readonly network: SimNetwork;
  readonly invariants = new Invariants();
  readonly nodes = new Map<NodeId, SimNode>();
  readonly history: ClientOp[] = [];
  /** Writes and compare-and-sets by id, to learn their fate wherever they are applied. */
  private readonly writes = new Map<number, ClientOp>();
  /** The latest events, as [virtual ms, text or message]; messages are described on failure only. */
  private readonly events: [number, string | Message][] = [];
  /** Messages delivered so far, by type. */
  readonly delivered: Partial<Record<Message["type"], number>> = {};
  /** Called with each message just before it is delivered (scenarios arm faults here). */
  onDeliver: ((message: Message) => void) | undefined;
  private readonly eventsShown: number;
  private nextOpId = 0;
  /** A violation seen inside a driver callback, thrown once the current event is done. */
  private violation: unknown;
  readonly options: Settings;

  constructor(options: ClusterOptions) {
    this.prng = new Prng(options.seed);
    this.scheduler = new SimScheduler(() => this.throwViolation());
    this.network = new SimNetwork(
      this.prng.fork(),
      this.scheduler,
      (message) => this.deliver(message),
      options.links ?? RELIABLE,
    );
    this.eventsShown = options.eventsShown ?? 50;
    this.options = {
      seed: options.seed,
      tickMs: options.tickMs ?? 10,
      electionTicks: options.electionTicks ?? 10,
      heartbeatTicks: options.heartbeatTicks ?? 1,
      maxInflight: options.maxInflight ?? RAFT_DEFAULTS.maxInflight,
      maxBatchEntries: options.maxBatchEntries ?? RAFT_DEFAULTS.maxBatchEntries,
      preVote: options.preVote ?? RAFT_DEFAULTS.preVote,
      checkQuorum: options.checkQuorum ?? RAFT_DEFAULTS.checkQuorum,
      snapshotEvery: options.snapshotEvery ?? 0,
      diskLatency: options.diskLatency ?? [0, 3],
      driver: options.driver ?? Driver,
      localReads: options.localReads ?? false,
      replay:
        options.replay ??
        `SIM_SEED=${options.seed} node --import tsx --test test/sim/random.test.ts`,
    };
  }

  /** A cluster of `voters` nodes formed the way Mill forms one: bootstrap node 1, add the rest one by one. */
  static async form(voters: number, options: ClusterOptions): Promise<SimCluster> {
    const cluster = new SimCluster(options);
    await cluster.guard(async () => {
      await cluster.start(1, RaftCore.bootstrap(1));
      await cluster.runUntil(
        () => cluster.leader() === 1,
        20 * cluster.options.electionTicks,
        "node 1 to lead",
      );
      for (let id = 2; id <= voters; id++) await cluster.addVoter(id);
    });
    return cluster;
  }

  /** A cluster whose `voters` nodes all start at once from the same one-entry configuration. */
  static async withVoters(voters: number, options: ClusterOptions): Promise<SimCluster> {
    const cluster = new SimCluster(options);
    const ids = Array.from({ length: voters }, (_, i) => i + 1);
    const data = encodeMembership({ voters: ids, learners: [] });
    await cluster.guard(async () => {
      for (const id of ids) {
        await cluster.start(id, {
          hardState: { term: 1, vote: 0, commit: 1 },
          entries: [{ index: 1, term: 1, kind: "membership", data }],
        });
      }
      await cluster.runUntil(
        () => cluster.leader() !== 0,
        20 * cluster.options.electionTicks,
        "a leader",
      );
    });
    return cluster;
  }

  // ---- nodes -------------------------------------------------------------------------------

  /** Starts a node that has never run: from `restore`, or empty (waiting to be added). */
  async start(
    id: NodeId,
    restore: RaftRestore = { hardState: EMPTY_HARD_STATE, entries: [] },
  ): Promise<SimNode> {
    if (this.nodes.has(id)) throw new Error(`node ${id} already exists`);
    const node = new SimNode(id, new SimDisk(restore));
    this.nodes.set(id, node);
    await this.guard(() => this.boot(node));
    return node;
  }

  /** The node loses power: its unsynced writes are lost (or torn) and nothing it awaited resumes. */
  crash(id: NodeId, mode: CrashMode = "loseUnsynced"): void {
    const node = this.node(id);
    if (!node.up) return;
    node.owner.alive = false;
    const lost = node.disk.crash(mode, this.prng);
    node.driver = undefined;
    node.crashBeforeSync = undefined;
    for (const op of node.writes) op.orphaned = true;
    for (const op of node.reads) op.failed = true;
    node.writes.clear();
    node.reads.clear();
    node.role = "down";
    this.invariants.onStopped(id);
    this.event(`crash n${id} (${mode}, ${lost} unsynced records lost)`);
  }

  /** Damages the durable snapshot of node `id`, which must be down; false when it has none. */
  damageSnapshot(id: NodeId, how: SnapshotDamage): boolean {
    const node = this.node(id);
    if (node.up) throw new Error(`node ${id} is up: damage its snapshot while it is down`);
    const damaged = node.disk.damageSnapshot(how);
    if (damaged) this.event(`fault: n${id}'s snapshot is ${how}`);
    return damaged;
  }

  /**
   * Puts a bad snapshot file at `index`, above its own snapshot, on node `id`'s disk (it must be
   * down); false when it has no snapshot. It must open from its own snapshot and keep its log.
   */
  plantSnapshot(id: NodeId, how: SnapshotDamage, index: number): boolean {
    const node = this.node(id);
    if (node.up) throw new Error(`node ${id} is up: plant a snapshot while it is down`);
    const planted = node.disk.plantSnapshot(how, index);
    if (planted) this.event(`fault: an ${how} snapshot at ${index} is planted on n${id}`);
    return planted;
  }

  /** Node `id` has a damaged snapshot to set aside, or is rebuilding its log: it votes for nobody. */
  rebuilding(id: NodeId): boolean {
    const { disk } = this.node(id);
    return disk.damaged || disk.durable.hardState.recovering !== undefined;
  }

  async restart(id: NodeId): Promise<void> {
    const node = this.node(id);
    if (node.up) return;
    await this.guard(() => this.boot(node));
  }

  private async boot(node: SimNode): Promise<void> {
    const owner: Owner = { alive: true };
    node.owner = owner;
    node.kv = new KvMachine();
    const durable = node.disk.restore().hardState;
    const damaged = node.disk.damaged;
    const planted = node.disk.plantedSnapshot;
    const durableLast = lastIndex(node.disk.durable);
    this.invariants.onBoot(node.id);
    const random = this.prng.fork();
    const [minLatency, maxLatency] = this.options.diskLatency;
    const io: DriverIo = {
      storage: node.disk.open(owner, {
        scheduler: this.scheduler,
        lane: node.id,
        latency: () => this.prng.between(minLatency, maxLatency),
        onAppend: (log, written) =>
          this.record(() => this.invariants.onAppend(node.id, log, written)),
        crashesAtSync: () => {
          const mode = node.crashBeforeSync;
          if (mode) this.crash(node.id, mode);
          return mode !== undefined;
        },
      }),
      transport: {
        send: (messages) => {
          if (owner.alive) this.send(messages);
        },
        close: () => Promise.resolve(),
      },
      clock: this.scheduler.clock(owner, node.id),
    };
    const o = this.options;
    const driver = await o.driver.open(
      {
        id: node.id,
        stateMachine: this.stateMachine(node, owner),
        tickMs: o.tickMs,
        electionTicks: o.electionTicks,
        heartbeatTicks: o.heartbeatTicks,
        maxInflight: o.maxInflight,
        maxBatchEntries: o.maxBatchEntries,
        preVote: o.preVote,
        checkQuorum: o.checkQuorum,
        snapshotEvery: o.snapshotEvery > 0 ? o.snapshotEvery : Number.POSITIVE_INFINITY,
        catchUpTimeoutMs: 50 * o.electionTicks * o.tickMs,
        random: () => random.float(),
        // A healthy driver never warns here (no bad frames, no failing disk), but for setting
        // aside the snapshot a fault damaged.
        warn: (message) => {
          if (damaged && /; set it aside as /.test(message)) this.event(message);
          else this.record(() => fail(`node ${node.id} warned: ${message}`));
        },
      },
      io,
    );
    node.driver = driver;
    node.role = "follower";
    if (planted) {
      // Its own snapshot and the log after it hold everything: a planted file costs nothing.
      const status = driver.status();
      this.record(() => {
        if (status.lastIndex !== durableLast || (status.recovering && !durable.recovering)) {
          fail(`node ${node.id} lost its log to a planted snapshot at ${planted.index}`);
        }
      });
    }
    driver.onLeaderChange((leader, role) => {
      if (!owner.alive) return;
      const status = driver.status();
      if (status.role === "leader")
        this.record(() => this.invariants.onLeader(node.id, status.term));
      if (role !== node.role) {
        node.role = role;
        this.event(`n${node.id} is ${role} (leader ${leader})`);
      }
    });
    this.invariants.onRestart(node.id, driver.status(), durable);
    this.event(`start n${node.id} term ${durable.term} commit ${durable.commit}`);
  }

  /** The node's KvMachine, seen by the invariants and the client history as it applies. */
  private stateMachine(node: SimNode, owner: Owner): StateMachine {
    const kv = node.kv;
    return {
      apply: (index, data) => {
        const output = kv.apply(index, data);
        if (owner.alive) this.record(() => this.onApplied(node, kv, index, output));
        return output;
      },
      snapshot: () => kv.snapshot(),
      restore: (data) => {
        kv.restore(data);
        if (owner.alive) {
          this.record(() => this.invariants.onRestored(node.id, kv.lastIndex, kv.digest));
        }
      },
    };
  }

  private onApplied(node: SimNode, kv: KvMachine, index: number, output: KvOutput): void {
    this.invariants.onApplied(node.id, index, kv.digest);
    const id = kv.lastCommandId;
    this.invariants.onCommandApplied(node.id, id, index);
    const op = this.writes.get(id);
    if (!op) fail(`node ${node.id} applied command ${id} that no client sent`);
    if (op.failed) {
      fail(
        `node ${node.id} applied command ${id} at ${index}, yet its proposer was told it was lost`,
      );
    }
    // Applied anywhere means it took effect by now: the earliest valid moment for its answer.
    if (op.ret === undefined) {
      op.ret = this.scheduler.stamp();
      op.output = output;
    }
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
    const driver = this.node(id).driver;
    if (!driver) throw new Error(`node ${id} is down`);
    return driver.status();
  }

  /** The running leader of the highest term, or 0. */
  leader(): NodeId {
    let best: RaftStatus | undefined;
    for (const node of this.up()) {
      const status = node.driver!.status();
      if (status.role === "leader" && (!best || status.term > best.term)) best = status;
    }
    return best?.id ?? 0;
  }

  // ---- time and the network ----------------------------------------------------------------

  /** Ticks since the simulation began. */
  get tick(): number {
    return Math.floor(this.scheduler.now / this.options.tickMs);
  }

  /** One tick of virtual time: every event in it runs, then every running node is checked. */
  async step(): Promise<void> {
    await this.guard(async () => {
      await this.scheduler.runTo(this.scheduler.now + this.options.tickMs);
      for (const node of this.up()) {
        this.invariants.onStatus(node.driver!.status(), node.disk.state);
      }
    });
  }

  async run(ticks: number): Promise<void> {
    for (let i = 0; i < ticks; i++) await this.step();
  }

  /** Steps until `done()` holds; fails after `maxTicks` ticks, naming `what` it waited for. */
  async runUntil(done: () => boolean, maxTicks: number, what: string): Promise<number> {
    for (let ticks = 0; ticks <= maxTicks; ticks++) {
      if (done()) return ticks;
      await this.step();
    }
    throw this.failure(new Error(`timed out after ${maxTicks} ticks waiting for ${what}`));
  }

  private send(messages: readonly Message[]): void {
    for (const message of messages) {
      this.record(() => this.invariants.onSend(message));
      this.network.send(message);
    }
  }

  private deliver(message: Message): void {
    if (!this.nodes.get(message.to)?.up) return;
    this.onDeliver?.(message);
    const driver = this.nodes.get(message.to)?.driver;
    if (!driver) return;
    this.delivered[message.type] = (this.delivered[message.type] ?? 0) + 1;
    this.event(message);
    driver.receive(message);
  }

  // ---- clients -----------------------------------------------------------------------------

  /**
   * Submits a client operation at node `id`; undefined when that node is down, or is not the
   * leader and the operation is a write. A write goes through `propose` (by default the driver's
   * propose; a removal passes one that carries the write in its membership entry).
   */
  submit(
    id: NodeId,
    input: KvInput,
    client = 0,
    propose: (driver: Driver, data: Uint8Array) => Promise<unknown> = (driver, data) =>
      driver.propose(data),
  ): ClientOp | undefined {
    const node = this.node(id);
    const driver = node.driver;
    if (!driver) return undefined;
    if (input.op !== "read" && driver.status().role !== "leader") return undefined;
    const op: ClientOp = {
      id: ++this.nextOpId,
      client,
      node: id,
      input,
      call: this.scheduler.stamp(),
    };
    this.history.push(op);
    this.event(`client ${client} -> n${id} ${describeInput(input)}`);
    const { owner, kv } = node;
    if (input.op === "read") {
      if (this.options.localReads) {
        op.ret = this.scheduler.stamp();
        op.output = { value: kv.get(input.key) };
        return op;
      }
      node.reads.add(op);
      driver.readBarrier().then(
        () => {
          node.reads.delete(op);
          // A read its client gave up on stays out of the history.
          if (!owner.alive || op.failed) return;
          op.ret = this.scheduler.stamp();
          op.output = { value: kv.get(input.key) };
        },
        () => {
          node.reads.delete(op);
          op.failed = true;
        },
      );
      return op;
    }
    this.writes.set(op.id, op);
    node.writes.add(op);
    propose(driver, encodeCommand(op.id, input)).then(
      () => node.writes.delete(op),
      (error) => {
        node.writes.delete(op);
        if (!owner.alive) return;
        if (error instanceof ProposalLostError || error instanceof NotLeaderError) {
          this.record(() => {
            if (op.ret !== undefined) {
              fail(`node ${id} was told command ${op.id} was lost, yet a node applied it`);
            }
            op.failed = true;
          });
        } else op.orphaned = true;
      },
    );
    return op;
  }

  /**
   * Submits at node `at` (default: the leader) and steps until the operation returns. Throws
   * when the node refuses it or it does not return within `maxTicks`.
   */
  async perform(
    input: KvInput,
    at = this.leader(),
    maxTicks = 30 * this.options.electionTicks,
  ): Promise<ClientOp> {
    const op = this.submit(at, input);
    if (!op) throw this.failure(new Error(`node ${at} refused ${describeInput(input)}`));
    await this.runUntil(
      () => op.ret !== undefined || op.failed === true,
      maxTicks,
      `${describeInput(input)} at node ${at} to return`,
    );
    if (op.failed) throw this.failure(new Error(`${describeInput(input)} at node ${at} failed`));
    return op;
  }

  /** Steps until every running member has applied all that the leader committed; returns ticks. */
  awaitConvergence(maxTicks = 50 * this.options.electionTicks): Promise<number> {
    return this.runUntil(
      () => {
        const leader = this.leader();
        if (!leader) return false;
        const { commit, membership } = this.status(leader);
        const members = [...membership.voters, ...membership.learners];
        return members.every((id) => !this.nodes.get(id)?.up || this.status(id).applied >= commit);
      },
      maxTicks,
      "every running member to apply the leader's commit",
    );
  }

  /**
   * Has the leader make a membership change through the driver (`call`), again at each new
   * leader until the leader that made it applied it or the current leader's configuration shows
   * it (the change took effect there).
   */
  private async untilLeaderChanges(
    what: string,
    call: (driver: Driver) => Promise<void>,
    shows: (membership: Membership) => boolean,
    maxTicks: number,
  ): Promise<void> {
    let attempt: Attempt | undefined;
    await this.runUntil(
      () => {
        if (attempt?.done && attempt.error === undefined) return true;
        const leaderId = this.leader();
        if (!leaderId) return false;
        if (attempt && (attempt.done || attempt.leader !== leaderId)) {
          if (shows(this.status(leaderId).membership)) return true;
          const { error } = attempt;
          if (error !== undefined && !isTransient(error)) throw error;
          attempt = undefined;
        }
        if (!attempt) {
          const current: Attempt = { leader: leaderId, done: false };
          attempt = current;
          this.event(`n${leaderId} starts: ${what}`);
          call(this.node(leaderId).driver!).then(
            () => {
              current.done = true;
            },
            (error: unknown) => {
              current.done = true;
              current.error = error;
            },
          );
        }
        return false;
      },
      maxTicks,
      what,
    );
  }

  /** Proposes one membership change at the leader and waits until it took effect. */
  changeMembership(
    change: MembershipChange,
    maxTicks = 50 * this.options.electionTicks,
  ): Promise<void> {
    return this.untilLeaderChanges(
      `${change.op} of node ${change.id}`,
      (driver) => driver.proposeMembership(change),
      (membership) => showsChange(membership, change),
      maxTicks,
    );
  }

  /** Starts node `id` if new and has the leader add it as a voter (learner, catch-up, promotion). */
  async addVoter(id: NodeId, maxTicks = 100 * this.options.electionTicks): Promise<void> {
    if (!this.nodes.has(id)) await this.start(id);
    await this.untilLeaderChanges(
      `addVoter of node ${id}`,
      (driver) => driver.addVoter(id),
      (membership) => membership.voters.includes(id),
      maxTicks,
    );
  }

  /**
   * Liveness: heals the network, restarts every crashed node but those in `keepDown` (which are
   * crashed), and requires a leader to commit a fresh write within `maxTicks`. Returns the ticks
   * it took. Keep down only what leaves a majority of every configuration alive
   * (survivableDowns), or nothing can be required.
   */
  async awaitProgress(
    maxTicks = 30 * this.options.electionTicks,
    keepDown: readonly NodeId[] = [],
  ): Promise<number> {
    this.network.heal();
    this.network.faults = RELIABLE;
    for (const node of this.nodes.values()) {
      node.crashBeforeSync = undefined;
      if (keepDown.includes(node.id)) this.crash(node.id);
      else if (!node.up) await this.restart(node.id);
    }
    this.event(`faults healed${keepDown.length > 0 ? `, nodes ${keepDown} kept down` : ""}`);
    let probe: ClientOp | undefined;
    const value = `probe@${this.scheduler.now}`;
    return this.runUntil(
      () => {
        if (probe?.ret !== undefined) return true;
        const leader = this.leader();
        // A new leader gets the probe anew, and so does one that refused it (mid-transfer).
        if (leader && (!probe || probe.failed || probe.node !== leader)) {
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
   * configuration found in any node's log keeps a majority of its voters outside the set and
   * outside the nodes rebuilding a lost log (they vote for nobody).
   */
  survivableDowns(max: number): NodeId[] {
    const down: NodeId[] = [];
    for (const id of this.prng.shuffle([...this.nodes.keys()])) {
      if (down.length >= max) break;
      if (this.survives([...down, id])) down.push(id);
    }
    return down;
  }

  /** Whether every configuration in any node's log keeps a voting majority without `lost`. */
  survives(lost: readonly NodeId[]): boolean {
    const out = (v: NodeId) => lost.includes(v) || (this.nodes.has(v) && this.rebuilding(v));
    return [...this.nodes.values()].every((node) => {
      const voters = latestVoters(node.disk.state);
      return voters.filter((v) => !out(v)).length > voters.length / 2;
    });
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

  event(what: string | Message): void {
    this.events.push([this.scheduler.now, what]);
    if (this.events.length > 2 * this.eventsShown) this.events.splice(0, this.eventsShown);
  }

  /**
   * Runs a check from inside a driver callback: the driver would catch what it throws (a failed
   * apply rejects a proposal), so the first violation is kept and thrown after the event.
   */
  private record(check: () => void): void {
    try {
      check();
    } catch (error) {
      this.violation ??= error;
    }
  }

  private throwViolation(): void {
    if (this.violation !== undefined) throw this.violation;
  }

  /** Wraps an error with the seed, the replay command and the latest events. */
  failure(error: unknown): SimFailure {
    if (error instanceof SimFailure) return error;
    const reason = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    const failure = new SimFailure(
      `${reason}\nseed=${this.options.seed}\nreplay: ${this.options.replay}\n` +
        `last ${this.eventsShown} events:\n  ${this.events
          .slice(-this.eventsShown)
          .map(([at, what]) => `${at}ms ${typeof what === "string" ? what : describe(what)}`)
          .join("\n  ")}`,
    );
    if (error instanceof Error) failure.stack = `${failure.message}\n${error.stack ?? ""}`;
    return failure;
  }

  async guard<T>(body: () => T | Promise<T>): Promise<T> {
    try {
      const result = await body();
      this.throwViolation();
      return result;
    } catch (error) {
      throw this.failure(this.violation ?? error);
    }
  }
}

/** One leader's go at a membership change, and how it ended. */
interface Attempt {
  readonly leader: NodeId;
  done: boolean;
  error?: unknown;
}

function fail(message: string): never {
  throw new InvariantViolation(message);
}

/** Refusals that pass once the cluster settles: try again (at the current leader). */
function isTransient(error: unknown): boolean {
  return (
    error instanceof NotLeaderError ||
    error instanceof ProposalLostError ||
    /retry|stopped|did not catch up/.test(String(error))
  );
}

function showsChange(membership: Membership, change: MembershipChange): boolean {
  const { id } = change;
  switch (change.op) {
    case "addLearner":
      return isMember(membership, id);
    case "promote":
      return membership.voters.includes(id);
    case "demote":
      return membership.learners.includes(id);
    case "remove":
      return !isMember(membership, id);
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
