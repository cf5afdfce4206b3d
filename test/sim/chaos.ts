/**
 * The randomized workload behind random.test.ts: a cluster formed from a seed, then a stretch of
 * virtual time in which clients read, write and compare-and-set while crashes (with and without
 * lost or torn unsynced writes), restarts, snapshots on disk damaged (or bad newer ones planted)
 * while their node is down, partitions, asymmetric cuts, lossy links, membership changes,
 * leadership transfers and snapshots happen at random. Then the faults heal, progress is
 * required, and the client history must be linearizable.
 * Owns: the fault schedule and the client mix. Must not touch: the core, the invariants.
 */

import type { MembershipChange, NodeId } from "../../lib/raft/types.ts";
import { type ClientOp, type ClusterOptions, SimCluster } from "./cluster.ts";
import type { KvInput } from "./linearizability.ts";
import { CHAOTIC, RELIABLE, UNRELIABLE } from "./network.ts";
import { Prng } from "./prng.ts";

/** Client ids of the writes that removals carry (one per removed node id), apart from clients'. */
const REMOVAL_CLIENTS = 1_000_000;

export interface ChaosOptions {
  readonly voters?: number;
  /** Virtual ticks of faults and clients before healing. */
  readonly ticks?: number;
  readonly clients?: number;
  readonly replay?: string;
  /** Runs this driver (a broken one, to prove the run catches it). */
  readonly driver?: ClusterOptions["driver"];
}

export interface ChaosSummary {
  readonly seed: number;
  readonly ticks: number;
  readonly operations: number;
  readonly completed: number;
  /** How many of each fault were injected. */
  readonly faults: Readonly<Record<string, number>>;
  readonly lostRecords: number;
  readonly leaderTerms: number;
  readonly ticksToRecover: number;
}

const KEYS = ["x", "y"];

export async function runChaos(seed: number, options: ChaosOptions = {}): Promise<ChaosSummary> {
  const voters = options.voters ?? 5;
  // Settings come from a stream of their own, so the cluster's stream starts the same for all.
  const settings = new Prng(seed ^ 0x5eed);
  const cluster = await SimCluster.form(voters, {
    seed,
    snapshotEvery: settings.pick([0, 8, 30]),
    electionTicks: settings.pick([6, 10, 20]),
    heartbeatTicks: settings.pick([1, 2]),
    maxInflight: settings.pick([1, 4, 64]),
    maxBatchEntries: settings.pick([1, 3, 256]),
    preVote: settings.chance(0.85),
    checkQuorum: settings.chance(0.85),
    ...(options.replay ? { replay: options.replay } : {}),
    ...(options.driver ? { driver: options.driver } : {}),
  });
  const chaos = new Chaos(cluster, cluster.prng.fork(), options.clients ?? 4);
  const ticks = options.ticks ?? 1500;
  for (let i = 0; i < ticks; i++) {
    await chaos.injectFaults();
    chaos.runClients();
    await cluster.step();
  }
  // Half the runs owe progress with up to two nodes still down, chosen so that every
  // configuration in any log keeps a live majority.
  const keepDown = settings.chance(0.5) ? cluster.survivableDowns(2) : [];
  const ticksToRecover = await cluster.awaitProgress(undefined, keepDown);
  // Let clients still waiting hear their answers before the history is judged.
  await cluster.run(3 * cluster.options.electionTicks);
  cluster.checkLinearizable();
  return {
    seed,
    ticks: cluster.tick,
    operations: cluster.history.length,
    completed: cluster.history.filter((op) => op.ret !== undefined).length,
    faults: chaos.faults,
    lostRecords: [...cluster.nodes.values()].reduce(
      (n, node) => n + node.disk.stats.lostRecords,
      0,
    ),
    leaderTerms: cluster.invariants.leaderTerms,
    ticksToRecover,
  };
}

class Chaos {
  readonly faults: Record<string, number> = {};
  private nextId: NodeId;
  private readonly waiting = new Map<number, { op: ClientOp; since: number }>();
  private opCount = 0;

  constructor(
    private readonly cluster: SimCluster,
    private readonly prng: Prng,
    private readonly clients: number,
  ) {
    this.nextId = cluster.nodes.size + 1;
  }

  async injectFaults(): Promise<void> {
    const { cluster, prng } = this;
    const ids = [...cluster.nodes.keys()];
    const down = ids.filter((id) => !cluster.node(id).up);
    const up = ids.filter((id) => cluster.node(id).up);
    // Mostly a minority down, sometimes a majority: then nothing may commit until it returns.
    if (up.length > 0 && prng.chance(0.006) && (down.length < 2 || prng.chance(0.2))) {
      const victim = prng.pick(up);
      const mode = prng.chance(0.5) ? "tearUnsynced" : "loseUnsynced";
      if (prng.chance(0.5)) {
        cluster.node(victim).crashBeforeSync = mode;
        cluster.event(`fault: n${victim} will crash before its next sync (${mode})`);
      } else cluster.crash(victim, mode);
      this.count("crash");
    }
    if (down.length > 0 && prng.chance(0.004)) this.damageSnapshot(prng.pick(down));
    if (down.length > 0 && prng.chance(0.03)) await cluster.restart(prng.pick(down));
    if (prng.chance(0.005)) {
      const shuffled = prng.shuffle([...ids]);
      const cut = 1 + prng.int(shuffled.length - 1);
      cluster.network.partition(shuffled.slice(0, cut), shuffled.slice(cut));
      cluster.event(`fault: partition ${shuffled.slice(0, cut)} | ${shuffled.slice(cut)}`);
      this.count("partition");
    }
    if (prng.chance(0.003)) {
      const [from, to] = prng.shuffle([...ids]);
      cluster.network.cut(from!, to!);
      cluster.event(`fault: cut n${from}->n${to}`);
      this.count("cut");
    }
    if (!cluster.network.healthy && prng.chance(0.01)) {
      cluster.network.heal();
      cluster.event("network healed");
    }
    if (prng.chance(0.005)) {
      const lossy = cluster.network.faults === RELIABLE;
      cluster.network.faults = lossy ? prng.pick([UNRELIABLE, CHAOTIC]) : RELIABLE;
      cluster.event(`links ${lossy ? JSON.stringify(cluster.network.faults) : "reliable"}`);
      if (lossy) this.count("lossy");
    }
    if (prng.chance(0.004)) await this.changeMembership();
    if (prng.chance(0.002)) this.transferLeadership();
  }

  /**
   * Damages a down node's snapshot, which it sets aside at its next start and then rebuilds its
   * log without voting; or plants a bad newer snapshot file next to it, which it sets aside and
   * opens from its own snapshot, keeping its log (the cluster checks that it does). One node at
   * a time, and only where every configuration keeps a voting majority without it: a majority
   * rebuilding at once could elect nobody, rightly.
   */
  private damageSnapshot(id: NodeId): void {
    const { cluster, prng } = this;
    if ([...cluster.nodes.keys()].some((n) => cluster.rebuilding(n))) return;
    if (!cluster.survives([id])) return;
    const how = prng.pick(["unrestorable", "unreadable"] as const);
    if (prng.chance(0.5)) {
      if (cluster.damageSnapshot(id, how)) this.count("damaged snapshot");
      return;
    }
    // Anywhere above its own snapshot, within its log or past its end.
    const { durable } = cluster.node(id).disk;
    const index = (durable.snapshot?.meta.index ?? 0) + 1 + prng.int(durable.entries.length + 10);
    if (cluster.plantSnapshot(id, how, index)) this.count("planted snapshot");
  }

  private async changeMembership(): Promise<void> {
    const { cluster, prng } = this;
    const leaderId = cluster.leader();
    if (!leaderId) return;
    const status = cluster.status(leaderId);
    const { membership } = status;
    const choices: (() => Promise<void>)[] = [];
    if (membership.voters.length > 3) {
      choices.push(async () => this.removeWithWrite(prng.pick(membership.voters)));
    }
    if (membership.voters.length < 6) {
      choices.push(async () => {
        const id = this.nextId++;
        await cluster.start(id);
        this.propose({ op: "addLearner", id });
      });
    }
    const learners = membership.learners.filter(
      (id) => cluster.nodes.get(id)?.up && cluster.status(id).applied >= status.commit - 5,
    );
    if (learners.length > 0)
      choices.push(async () => this.propose({ op: "promote", id: prng.pick(learners) }));
    if (choices.length > 0) await prng.pick(choices)();
  }

  /**
   * Has the leader propose a change through its driver, without waiting. The driver refuses
   * what the configuration no longer allows by the time the change's turn comes (another change
   * got there first, the leader lost its role): such refusals are the driver's to make.
   */
  private propose(change: MembershipChange): void {
    const leaderId = this.cluster.leader();
    this.cluster.event(`fault: n${leaderId} proposes ${change.op} n${change.id}`);
    this.count(change.op);
    this.cluster
      .node(leaderId)
      .driver!.proposeMembership(change)
      .catch(() => this.count(`${change.op} refused`));
  }

  /**
   * Has the leader remove node `id` with a client write carried in the same entry, as `mill
   * remove` carries NodeRemove: the write's outcome is the removal's, and the linearizability
   * check holds it. Refusals are the driver's to make, as for other changes.
   */
  private removeWithWrite(id: NodeId): void {
    const { cluster } = this;
    const leaderId = cluster.leader();
    cluster.event(`fault: n${leaderId} removes n${id} with a write`);
    this.count("remove");
    cluster.submit(
      leaderId,
      { op: "write", key: "removed", value: `n${id}@${cluster.tick}` },
      REMOVAL_CLIENTS + id,
      (driver, data) => driver.removeServer(id, data),
    );
  }

  private transferLeadership(): void {
    const { cluster, prng } = this;
    const leaderId = cluster.leader();
    if (!leaderId) return;
    const to = prng.pick(cluster.status(leaderId).membership.voters);
    cluster.event(`fault: transfer leadership n${leaderId} -> n${to}`);
    cluster
      .node(leaderId)
      .driver!.transferLeadership(to)
      .catch(() => this.count("transfer timed out"));
    this.count("transfer");
  }

  private count(fault: string): void {
    this.faults[fault] = (this.faults[fault] ?? 0) + 1;
  }

  runClients(): void {
    const { cluster, prng } = this;
    const timeout = 3 * cluster.options.electionTicks;
    for (let client = 1; client <= this.clients; client++) {
      const waiting = this.waiting.get(client);
      if (waiting && waiting.op.ret === undefined && !waiting.op.failed && !waiting.op.orphaned) {
        // A read may be given up (it had no effect). A write is awaited until its fate is
        // known: giving up would leave it in flight beside the client's next operations,
        // and the checker's work grows exponentially with concurrency.
        if (waiting.op.input.op === "read" && cluster.tick - waiting.since > timeout) {
          waiting.op.failed = true;
        } else continue;
      }
      this.waiting.delete(client);
      if (!prng.chance(0.3)) continue;
      const leader = cluster.leader();
      const up = cluster.up();
      if (up.length === 0) continue;
      const target = leader && prng.chance(0.7) ? leader : prng.pick(up).id;
      const op = cluster.submit(target, this.nextInput(client), client);
      if (op) this.waiting.set(client, { op, since: cluster.tick });
    }
  }

  private nextInput(client: number): KvInput {
    const { prng } = this;
    const key = prng.pick(KEYS);
    const value = `c${client}.${++this.opCount}`;
    const roll = prng.float();
    if (roll < 0.4) return { op: "read", key };
    if (roll < 0.8) return { op: "write", key, value };
    const seen = this.cluster.history.findLast((o) => o.input.key === key && o.ret !== undefined);
    const expect =
      seen?.input.op === "write"
        ? seen.input.value
        : seen?.input.op === "cas"
          ? seen.input.value
          : null;
    return { op: "cas", key, expect, value };
  }
}
