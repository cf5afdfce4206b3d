/**
 * Named Raft scenarios on the simulated cluster (the production driver over simulated disk,
 * network and time), each deterministic from its seed: elections,
 * agreement with and without a majority, stale leaders, persistence, Figure 8, churn, snapshots,
 * disk faults, ReadIndex across a leader change, membership changes under faults, removals that
 * carry a command (follower, leader, partitioned node, a fresh node in a removed one's place, an
 * expired join's learner) and
 * recovering a survivor of a lost majority. Every
 * scenario runs with all invariants checked at each step and ends with a linearizability check
 * of its client history. A failure prints the seed, the replay command and the last events.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { recoverAlone } from "../../lib/raft/recover.ts";
import type { NodeId } from "../../lib/raft/types.ts";
import { AnswersBeforeSync, ForgetsLostLog, SendsBeforeSync } from "./broken.ts";
import { type ClientOp, type ClusterOptions, SimCluster } from "./cluster.ts";
import { lastIndex } from "./disk.ts";
import type { KvInput } from "./linearizability.ts";
import { CHAOTIC, UNRELIABLE } from "./network.ts";

type Start = "form" | "voters";

/** SIM_SEED reruns every scenario under another seed (a soak: loop over seeds). */
const SEED = Number(process.env.SIM_SEED ?? 1);
if (!Number.isSafeInteger(SEED))
  throw new Error(`SIM_SEED must be an integer, got "${process.env.SIM_SEED}"`);

/** Runs `body` on a fresh cluster, then requires progress and a linearizable history. */
function scenario(
  name: string,
  voters: number,
  body: (cluster: SimCluster) => Promise<void>,
  options: Partial<Omit<ClusterOptions, "seed">> & { start?: Start } = {},
): void {
  test(name, async () => {
    const { start = "voters", ...rest } = options;
    const clusterOptions: ClusterOptions = {
      seed: SEED,
      replay: `SIM_SEED=${SEED} node --import tsx --test --test-name-pattern="${name}" test/sim/scenarios.test.ts`,
      ...rest,
    };
    const cluster =
      start === "form"
        ? await SimCluster.form(voters, clusterOptions)
        : await SimCluster.withVoters(voters, clusterOptions);
    await cluster.guard(() => body(cluster));
    await cluster.awaitProgress();
    await cluster.awaitConvergence();
    cluster.checkLinearizable();
  });
}

const write = (key: string, value: string): KvInput => ({ op: "write", key, value });
const read = (key: string): KvInput => ({ op: "read", key });

/** A cluster broken on purpose (its driver, or its read path): the checks must catch it. */
function brokenCluster(
  voters: number,
  broken: Pick<ClusterOptions, "driver" | "localReads" | "snapshotEvery">,
  pattern: string,
): Promise<SimCluster> {
  return SimCluster.withVoters(voters, {
    seed: SEED,
    ...broken,
    replay: `SIM_SEED=${SEED} node --import tsx --test --test-name-pattern="${pattern}" test/sim/scenarios.test.ts`,
  });
}

function others(cluster: SimCluster, id: NodeId): NodeId[] {
  return [...cluster.nodes.keys()].filter((n) => n !== id);
}

async function awaitNewLeader(cluster: SimCluster, old: NodeId): Promise<NodeId> {
  await cluster.runUntil(
    () => cluster.leader() !== 0 && cluster.leader() !== old,
    30 * cluster.options.electionTicks,
    `a leader other than node ${old}`,
  );
  return cluster.leader();
}

/** Every running node holds `value` at `key` in its state machine. */
function assertEverywhere(cluster: SimCluster, key: string, value: string | null): void {
  for (const node of cluster.up())
    assert.equal(node.kv.get(key), value, `node ${node.id} at ${key}`);
}

/**
 * `clients` clients each complete `count` writes of their own, retrying at the leader after a
 * refusal or a timeout (the abandoned attempt stays pending in the history).
 */
async function writeConcurrently(
  cluster: SimCluster,
  clients: number,
  count: number,
  maxTicks: number,
): Promise<void> {
  const done = new Array<number>(clients).fill(0);
  const current = new Array<{ op: ClientOp; since: number } | undefined>(clients);
  const timeout = 3 * cluster.options.electionTicks;
  await cluster.runUntil(
    () => {
      for (let c = 0; c < clients; c++) {
        const running = current[c];
        if (running?.op.ret !== undefined) {
          done[c]!++;
          current[c] = undefined;
        } else if (running && !running.op.failed && cluster.tick - running.since < timeout)
          continue;
        if (done[c]! >= count) continue;
        const leader = cluster.leader();
        const op = leader
          ? cluster.submit(leader, write(`k${c % 2}`, `c${c}.${done[c]}.${cluster.tick}`), c)
          : undefined;
        current[c] = op ? { op, since: cluster.tick } : undefined;
      }
      return done.every((n) => n >= count);
    },
    maxTicks,
    `${clients} clients to complete ${count} writes each`,
  );
}

describe("elections", () => {
  scenario("initial election", 3, async (cluster) => {
    const leader = cluster.leader();
    const { term } = cluster.status(leader);
    await cluster.run(20 * cluster.options.electionTicks);
    for (const node of cluster.up()) {
      assert.equal(cluster.status(node.id).leader, leader, `node ${node.id} follows the leader`);
      assert.equal(cluster.status(node.id).term, term, "no election without a failure");
    }
  });

  scenario("re-election after leader loss", 3, async (cluster) => {
    const first = cluster.leader();
    cluster.crash(first);
    const second = await awaitNewLeader(cluster, first);
    await cluster.restart(first);
    await cluster.run(10 * cluster.options.electionTicks);
    assert.equal(cluster.leader(), second, "the old leader rejoins as a follower");
    cluster.network.partition([second], others(cluster, second));
    await awaitNewLeader(cluster, second);
  });

  scenario("many elections", 7, async (cluster) => {
    const ids = [...cluster.nodes.keys()];
    for (let round = 0; round < 15; round++) {
      const [a, b, c, ...majority] = cluster.prng.shuffle([...ids]);
      cluster.network.partition([a!, b!, c!], majority);
      await cluster.runUntil(
        () => majority.includes(cluster.leader()),
        30 * cluster.options.electionTicks,
        `a leader among ${majority}`,
      );
      cluster.network.heal();
      await cluster.run(cluster.prng.int(3 * cluster.options.electionTicks));
    }
    assert.ok(cluster.invariants.leaderTerms >= 2, "leadership changed hands");
  });
});

describe("agreement", () => {
  scenario("basic agreement", 5, async (cluster) => {
    for (let i = 1; i <= 10; i++) await cluster.perform(write("x", `v${i}`));
    await cluster.awaitConvergence();
    assertEverywhere(cluster, "x", "v10");
  });

  scenario("fail-agree: a disconnected follower catches up", 5, async (cluster) => {
    const leader = cluster.leader();
    const follower = others(cluster, leader)[0]!;
    cluster.network.partition([follower], others(cluster, follower));
    for (let i = 1; i <= 5; i++) await cluster.perform(write("x", `v${i}`));
    cluster.network.heal();
    await cluster.awaitConvergence();
    assertEverywhere(cluster, "x", "v5");
  });

  scenario("fail-no-agree: nothing commits without a majority", 5, async (cluster) => {
    const leader = cluster.leader();
    const [buddy, ...rest] = others(cluster, leader);
    await cluster.perform(write("x", "before"));
    const commit = cluster.status(leader).commit;
    cluster.network.partition([leader, buddy!], rest);
    const op = cluster.submit(leader, write("x", "minority"))!;
    assert.ok(op, "the old leader still accepts the proposal");
    await cluster.run(5 * cluster.options.electionTicks);
    assert.equal(op.ret, undefined, "a minority cannot commit");
    assert.equal(cluster.node(leader).kv.get("x"), "before");
    assert.ok(
      cluster.status(leader).applied <= commit + 1,
      "the minority leader applied nothing new",
    );
    cluster.network.heal();
    await cluster.awaitProgress();
    await cluster.awaitConvergence();
    assert.equal(op.failed, true, "the minority's entry was replaced by the majority's log");
  });

  scenario("concurrent proposals", 5, async (cluster) => {
    const leader = cluster.leader();
    const ops = Array.from({ length: 10 }, (_, i) =>
      cluster.submit(leader, { op: "cas", key: "c", expect: null, value: `v${i}` }, i),
    );
    await cluster.runUntil(
      () => ops.every((op) => op?.ret !== undefined),
      200,
      "all proposals to return",
    );
    await cluster.awaitConvergence();
    const swapped = ops.filter((op) => (op!.output as { swapped: boolean }).swapped);
    assert.equal(swapped.length, 1, "exactly one compare-and-set from null wins");
    assertEverywhere(cluster, "c", swapped[0]!.input.op === "cas" ? swapped[0]!.input.value : "");
  });

  scenario("unreliable agreement", 5, async (cluster) => {
    cluster.network.faults = UNRELIABLE;
    await writeConcurrently(cluster, 4, 10, 4000);
  });

  scenario("rejoin of a stale leader", 3, async (cluster) => {
    const old = cluster.leader();
    cluster.network.partition([old], others(cluster, old));
    const stale = [1, 2, 3].map((i) => cluster.submit(old, write("x", `stale${i}`))!);
    const fresh = await awaitNewLeader(cluster, old);
    await cluster.perform(write("x", "fresh"), fresh);
    cluster.network.heal();
    // New entries land on every index the stale proposals held, so the old leader learns their fate.
    for (let i = 1; i <= 3; i++) await cluster.perform(write("y", `${i}`));
    await cluster.awaitConvergence();
    assert.ok(
      stale.every((op) => op.failed),
      "the stale leader's proposals were discarded",
    );
    assertEverywhere(cluster, "x", "fresh");
    assert.notEqual(cluster.status(old).role, "leader");
  });
});

describe("persistence", () => {
  scenario("persistence across crash-restarts of all nodes", 3, async (cluster) => {
    for (let round = 1; round <= 5; round++) {
      await cluster.perform(write("x", `r${round}`));
      for (const id of cluster.nodes.keys()) cluster.crash(id);
      for (const id of cluster.nodes.keys()) await cluster.restart(id);
      await cluster.awaitProgress();
      assert.equal(
        ((await cluster.perform(read("x"))).output as { value: string }).value,
        `r${round}`,
      );
    }
  });

  async function figure8(cluster: SimCluster): Promise<void> {
    const { prng } = cluster;
    const ids = [...cluster.nodes.keys()];
    for (let round = 0; round < 200; round++) {
      const leader = cluster.leader();
      if (leader) cluster.submit(leader, write(`k${round % 3}`, `v${round}`));
      // Mostly short pauses so that leaders die with uncommitted entries in flight.
      await cluster.run(
        prng.chance(0.1) ? prng.int(5 * cluster.options.electionTicks) : prng.int(13),
      );
      if (leader && cluster.node(leader).up && prng.chance(0.5)) cluster.crash(leader);
      if (cluster.up().length < 3)
        await cluster.restart(prng.pick(ids.filter((id) => !cluster.node(id).up)));
    }
  }

  scenario("Figure 8", 5, figure8);
  scenario("Figure 8 unreliable", 5, async (cluster) => {
    cluster.network.faults = CHAOTIC;
    await figure8(cluster);
  });

  scenario("churn", 5, async (cluster) => {
    const { prng } = cluster;
    const ids = [...cluster.nodes.keys()];
    for (let tick = 0; tick < 1500; tick++) {
      if (prng.chance(0.02)) cluster.crash(prng.pick(ids));
      if (prng.chance(0.04)) await cluster.restart(prng.pick(ids));
      const leader = cluster.leader();
      if (leader && prng.chance(0.3)) cluster.submit(leader, write("x", `t${tick}`), tick % 4);
      if (prng.chance(0.2)) cluster.submit(prng.pick(ids), read("x"), 4 + (tick % 4));
      await cluster.step();
    }
  });
});

describe("snapshots", () => {
  const snapshotIndex = (cluster: SimCluster, id: NodeId) =>
    cluster.node(id).disk.state.snapshot?.meta.index ?? 0;

  /** Writes while `follower` is cut off, then heals: the leader must send it a snapshot. */
  async function lagAndCatchUp(cluster: SimCluster, writes: number): Promise<NodeId> {
    const leader = cluster.leader();
    const follower = others(cluster, leader)[0]!;
    cluster.network.partition([follower], others(cluster, follower));
    for (let i = 1; i <= writes; i++) await cluster.perform(write("x", `v${i}`));
    cluster.network.heal();
    return follower;
  }

  scenario(
    "snapshot basic",
    3,
    async (cluster) => {
      for (let i = 1; i <= 30; i++) await cluster.perform(write(`k${i % 4}`, `v${i}`));
      await cluster.awaitConvergence();
      for (const id of cluster.nodes.keys())
        assert.ok(snapshotIndex(cluster, id) >= 25, `node ${id} compacted`);
      assertEverywhere(cluster, "k2", "v30");
    },
    { snapshotEvery: 5 },
  );

  scenario(
    "snapshot install",
    3,
    async (cluster) => {
      const follower = await lagAndCatchUp(cluster, 30);
      await cluster.awaitConvergence();
      assert.ok((cluster.delivered.snapshot ?? 0) > 0, "a snapshot was sent");
      assert.ok(snapshotIndex(cluster, follower) >= 25);
      assert.equal(cluster.node(follower).kv.get("x"), "v30");
    },
    { snapshotEvery: 5 },
  );

  scenario(
    "snapshot install while unreliable",
    5,
    async (cluster) => {
      const follower = await lagAndCatchUp(cluster, 40);
      cluster.network.faults = CHAOTIC;
      await cluster.runUntil(
        () =>
          cluster.status(follower).applied >= cluster.status(cluster.leader() || follower).commit,
        3000,
        "the lagging follower to catch up over lossy links",
      );
      assert.ok((cluster.delivered.snapshot ?? 0) > 0, "a snapshot was sent");
    },
    { snapshotEvery: 5 },
  );

  scenario(
    "crash during snapshot install",
    3,
    async (cluster) => {
      let armed = false;
      cluster.onDeliver = (message) => {
        if (message.type === "snapshot" && !armed) {
          armed = true;
          cluster.node(message.to).crashBeforeSync = "loseUnsynced";
        }
      };
      const follower = await lagAndCatchUp(cluster, 30);
      await cluster.runUntil(
        () => !cluster.node(follower).up,
        300,
        "the follower to crash installing",
      );
      await cluster.restart(follower);
      await cluster.awaitConvergence();
      assert.ok(cluster.node(follower).disk.stats.lostRecords > 0, "the install was cut short");
      assert.equal(cluster.node(follower).kv.get("x"), "v30");
    },
    { snapshotEvery: 5 },
  );

  scenario(
    "snapshot: all nodes crash",
    3,
    async (cluster) => {
      for (let i = 1; i <= 23; i++) await cluster.perform(write("x", `v${i}`));
      for (const id of cluster.nodes.keys()) cluster.crash(id);
      for (const id of cluster.nodes.keys()) await cluster.restart(id);
      for (const id of cluster.nodes.keys()) assert.ok(snapshotIndex(cluster, id) >= 20);
      await cluster.awaitProgress();
      assert.equal(((await cluster.perform(read("x"))).output as { value: string }).value, "v23");
    },
    { snapshotEvery: 5 },
  );
});

describe("a snapshot on disk that cannot be restored", () => {
  for (const how of ["unrestorable", "unreadable"] as const) {
    scenario(
      `a follower restarts with an ${how} snapshot and catches up from an idle leader`,
      3,
      async (cluster) => {
        let lostLogReplies = 0;
        cluster.onDeliver = (message) => {
          if (message.type === "appendResp" && message.logLost) lostLogReplies++;
        };
        for (let i = 1; i <= 20; i++) await cluster.perform(write(`k${i % 2}`, `v${i}`));
        const leader = cluster.leader();
        const follower = others(cluster, leader)[0]!;
        cluster.crash(follower);
        assert.ok(cluster.damageSnapshot(follower, how), "the follower had compacted");
        const lost = cluster.node(follower).disk.durable.snapshot!.meta.index;
        await cluster.perform(write("k0", "while down"));
        await cluster.restart(follower);
        assert.ok(cluster.status(follower).recovering, "it rebuilds its log");
        // No write comes to carry an append: the leader's heartbeats must bring it back.
        await cluster.runUntil(
          () => cluster.status(follower).recovering === undefined,
          10 * cluster.options.electionTicks,
          "the follower to rebuild its log",
        );
        await writeConcurrently(cluster, 3, 8, 100 * cluster.options.electionTicks);
        await cluster.awaitConvergence();
        assert.deepEqual(cluster.node(follower).disk.setAside, [lost]);
        assert.equal(cluster.node(follower).kv.digest, cluster.node(leader).kv.digest);
        assert.equal(cluster.leader(), leader, "the leader led throughout");
        assert.ok(lostLogReplies > 0, "it told the leader, whose match index was stale");
      },
      { snapshotEvery: 5 },
    );
  }

  for (const how of ["unrestorable", "unreadable"] as const) {
    for (const where of ["within its log", "past its log's end"] as const) {
      scenario(
        `a follower with an ${how} snapshot planted ${where} opens from its own and keeps its log`,
        3,
        async (cluster) => {
          let lostLogReplies = 0;
          cluster.onDeliver = (message) => {
            if (message.type === "appendResp" && message.logLost) lostLogReplies++;
          };
          for (let i = 1; i <= 23; i++) await cluster.perform(write(`k${i % 2}`, `v${i}`));
          const leader = cluster.leader();
          const follower = others(cluster, leader)[0]!;
          cluster.crash(follower);
          const { disk } = cluster.node(follower);
          const own = disk.durable.snapshot!.meta.index;
          const last = lastIndex(disk.durable);
          assert.ok(last > own + 1, "the follower's log goes on past its snapshot");
          const planted = where === "within its log" ? own + 1 : last + 50;
          assert.ok(cluster.plantSnapshot(follower, how, planted));
          await cluster.restart(follower);
          assert.deepEqual(disk.setAside, [planted], "the planted file went aside");
          assert.equal(cluster.status(follower).recovering, undefined, "it lost nothing");
          assert.equal(cluster.status(follower).lastIndex, last, "it kept its log");
          await cluster.perform(write("k0", "after"));
          await cluster.awaitConvergence();
          assert.equal(cluster.node(follower).kv.digest, cluster.node(leader).kv.digest);
          assert.equal(lostLogReplies, 0, "it never told the leader its log was lost");
        },
        { snapshotEvery: 5 },
      );
    }
  }

  /**
   * The leader and one follower commit writes the third node never sees; the follower compacts
   * them into its snapshot, then goes down and its snapshot is damaged; the leader goes down
   * too. The third node and the follower (back, rebuilding its log) are all that is up.
   */
  async function loseTheOnlyOtherCopy(cluster: SimCluster): Promise<{ leader: NodeId }> {
    const leader = cluster.leader();
    const [follower, outsider] = others(cluster, leader);
    cluster.network.partition([leader, follower!], [outsider!]);
    for (let i = 1; i <= 12; i++) await cluster.perform(write("x", `v${i}`));
    cluster.crash(follower!);
    assert.ok(cluster.damageSnapshot(follower!, "unrestorable"));
    cluster.crash(leader);
    cluster.network.heal();
    await cluster.restart(follower!);
    return { leader };
  }

  scenario(
    "a node rebuilding its log elects nobody who lacks what it acknowledged",
    3,
    async (cluster) => {
      const { leader } = await loseTheOnlyOtherCopy(cluster);
      await cluster.run(30 * cluster.options.electionTicks);
      assert.equal(cluster.leader(), 0, "the outsider lacks v1..v12 and gets no vote");
      await cluster.restart(leader);
      await cluster.awaitProgress();
      await cluster.awaitConvergence();
      assertEverywhere(cluster, "x", "v12");
      for (const id of cluster.nodes.keys()) assert.equal(cluster.status(id).recovering, undefined);
    },
    { snapshotEvery: 5 },
  );

  test("a driver that forgets it is rebuilding a lost log is caught", async () => {
    const cluster = await brokenCluster(
      3,
      { driver: ForgetsLostLog, snapshotEvery: 5 },
      "forgets it is rebuilding",
    );
    await assert.rejects(async () => {
      const { leader } = await loseTheOnlyOtherCopy(cluster);
      // The outsider wins with the forgetful node's vote, though it lacks v1..v12.
      await awaitNewLeader(cluster, leader);
      await cluster.perform(read("x"));
      cluster.checkLinearizable();
    }, /leader completeness/);
  });
});

describe("disk faults", () => {
  scenario("unsynced writes are lost on crash", 3, async (cluster) => {
    const leader = cluster.leader();
    const follower = others(cluster, leader)[0]!;
    cluster.node(follower).crashBeforeSync = "loseUnsynced";
    const op = await cluster.perform(write("x", "1"));
    assert.equal(cluster.node(follower).up, false);
    assert.ok(cluster.node(follower).disk.stats.lostRecords > 0);
    assert.notEqual(op.ret, undefined, "the other two nodes committed it");
    await cluster.restart(follower);
    await cluster.awaitConvergence();
    assert.equal(cluster.node(follower).kv.get("x"), "1");
  });

  scenario("torn last record", 3, async (cluster) => {
    const follower = others(cluster, cluster.leader())[0]!;
    const disk = cluster.node(follower).disk;
    for (let i = 0; i < 20 && disk.stats.tornRecords === 0; i++) {
      cluster.node(follower).crashBeforeSync = "tearUnsynced";
      await cluster.perform(write("x", `v${i}`));
      await cluster.restart(follower);
    }
    assert.ok(disk.stats.tornRecords > 0, "a crash tore a record");
  });

  scenario("no double vote after crash", 5, async (cluster) => {
    for (let round = 0; round < 10; round++) {
      const leader = cluster.leader();
      // Every voter crashes as it is about to persist its next decision: a vote, most likely.
      for (const id of others(cluster, leader)) cluster.node(id).crashBeforeSync = "tearUnsynced";
      cluster.crash(leader);
      await cluster.run(3 * cluster.options.electionTicks);
      for (const id of cluster.nodes.keys()) await cluster.restart(id);
      await cluster.awaitProgress();
    }
  });

  scenario("a leader crashes before its sync after sending early", 3, async (cluster) => {
    let lost = 0;
    for (let round = 0; round < 5; round++) {
      const leader = cluster.leader();
      cluster.node(leader).crashBeforeSync = "loseUnsynced";
      for (let i = 0; i < 3; i++) cluster.submit(leader, write("x", `r${round}.${i}`), i);
      await cluster.runUntil(() => !cluster.node(leader).up, 100, `leader ${leader} to crash`);
      lost += cluster.node(leader).disk.stats.lostRecords;
      await cluster.restart(leader);
      await cluster.awaitProgress();
    }
    assert.ok(lost > 0, "crashing leaders lost unsynced entries");
  });

  scenario("a commit index left unsynced is relearned after a crash", 3, async (cluster) => {
    const follower = others(cluster, cluster.leader())[0]!;
    await cluster.perform(write("x", "1"));
    await cluster.run(3);
    const { disk } = cluster.node(follower);
    const before = cluster.status(follower).commit;
    assert.ok(disk.durable.hardState.commit < before, "the newest commit index is not synced");
    cluster.crash(follower);
    await cluster.restart(follower);
    assert.ok(cluster.status(follower).commit < before, "the restart lost it");
    await cluster.awaitConvergence();
    assert.equal(cluster.node(follower).kv.get("x"), "1");
  });

  test("a driver that sends before it syncs is caught", async () => {
    const cluster = await brokenCluster(3, { driver: SendsBeforeSync }, "sends before it syncs");
    await assert.rejects(async () => {
      const leader = cluster.leader();
      const [acker, outsider] = others(cluster, leader);
      await cluster.perform(write("x", "kept"));
      cluster.network.partition([leader, acker!], [outsider!]);
      // The acker acknowledges the write and then loses it: the leader commits on a lie.
      cluster.onDeliver = (message) => {
        if (message.to === acker && message.type === "append" && message.entries.length > 0) {
          cluster.node(acker!).crashBeforeSync = "loseUnsynced";
        }
      };
      await cluster.perform(write("x", "lost"));
      cluster.onDeliver = undefined;
      cluster.crash(leader);
      await cluster.restart(acker!);
      cluster.network.heal();
      // The two survivors elect a leader that lacks the committed write.
      await awaitNewLeader(cluster, leader);
      await cluster.perform(read("x"));
      cluster.checkLinearizable();
    }, /leader completeness/);
  });

  test("a driver that answers before its fsync returns is caught", async () => {
    const cluster = await brokenCluster(1, { driver: AnswersBeforeSync }, "answers before");
    await assert.rejects(async () => {
      await cluster.perform(write("x", "kept"));
      cluster.node(1).crashBeforeSync = "loseUnsynced";
      const op = cluster.submit(1, write("x", "lost"))!;
      await cluster.runUntil(() => !cluster.node(1).up, 100, "node 1 to crash at its sync");
      assert.notEqual(op.ret, undefined, "the write was answered before the crash");
      await cluster.restart(1);
      await cluster.awaitProgress();
      await cluster.perform(read("x"));
      cluster.checkLinearizable();
    }, /not linearizable/);
  });
});

describe("reads and membership", () => {
  scenario("ReadIndex is safe across a leader change", 5, async (cluster) => {
    await cluster.perform(write("x", "1"));
    const old = cluster.leader();
    const [buddy, ...rest] = others(cluster, old);
    cluster.network.partition([old, buddy!], rest);
    const staleReads = [cluster.submit(old, read("x"), 1), cluster.submit(buddy!, read("x"), 2)];
    const fresh = await awaitNewLeader(cluster, old);
    await cluster.perform(write("x", "2"), fresh);
    for (const id of [old, buddy!, ...rest]) cluster.submit(id, read("x"), 3 + id);
    await cluster.run(5 * cluster.options.electionTicks);
    for (const op of staleReads) {
      if (op?.ret !== undefined)
        assert.deepEqual(op.output, { value: "1" }, "served before the change");
    }
    cluster.network.heal();
    await cluster.awaitConvergence();
    const after = await cluster.perform(read("x"), old);
    assert.deepEqual(after.output, { value: "2" });
  });

  test("reads served from local state are caught", async () => {
    const cluster = await brokenCluster(5, { localReads: true }, "reads served from local state");
    await cluster.perform(write("x", "1"));
    const old = cluster.leader();
    const [buddy, ...rest] = others(cluster, old);
    cluster.network.partition([old, buddy!], rest);
    await cluster.perform(write("x", "2"), await awaitNewLeader(cluster, old));
    await cluster.perform(read("x"), buddy);
    assert.throws(() => cluster.checkLinearizable(), /not linearizable/);
  });

  test("a voter that has not yet received its own promotion still votes", async () => {
    const cluster = await SimCluster.withVoters(3, {
      seed: SEED,
      replay: `SIM_SEED=${SEED} node --import tsx --test --test-name-pattern="own promotion" test/sim/scenarios.test.ts`,
    });
    await cluster.perform(write("x", "1"));
    await cluster.start(4);
    await cluster.changeMembership({ op: "addLearner", id: 4 });
    await cluster.runUntil(
      () => cluster.status(4).applied >= cluster.status(cluster.leader()).commit,
      200,
      "learner 4 to catch up",
    );
    // The promotion commits on 1, 2 and 3 (three of the four new voters) while 4 is away.
    cluster.network.partition([4], [1, 2, 3]);
    await cluster.changeMembership({ op: "promote", id: 4 });
    cluster.crash(cluster.leader());
    cluster.network.heal();
    // Three of four voters are alive: they must elect a leader, which needs node 4's vote.
    await cluster.runUntil(
      () => cluster.leader() !== 0,
      50 * cluster.options.electionTicks,
      "a leader",
    );
  });

  scenario(
    "membership changes under faults",
    3,
    async (cluster) => {
      cluster.network.faults = UNRELIABLE;
      await cluster.perform(write("x", "1"));
      await cluster.start(4);
      await cluster.changeMembership({ op: "addLearner", id: 4 });
      cluster.crash(2);
      await cluster.runUntil(
        () => cluster.status(4).applied >= cluster.status(cluster.leader() || 1).commit,
        2000,
        "learner 4 to catch up",
      );
      assert.equal(cluster.status(4).role, "follower", "a learner never campaigns");
      await cluster.restart(2);
      await cluster.changeMembership({ op: "promote", id: 4 });
      await cluster.addVoter(5);
      await cluster.perform(write("x", "2"));
      const leader = cluster.leader();
      await cluster.changeMembership({ op: "remove", id: leader });
      const next = await awaitNewLeader(cluster, leader);
      assert.ok(!cluster.status(next).membership.voters.includes(leader), "the old leader is out");
      cluster.crash(leader);
      await cluster.changeMembership({
        op: "remove",
        id: others(cluster, next).find((id) => id !== leader)!,
      });
      await cluster.perform(write("x", "3"));
      assert.equal(cluster.status(cluster.leader()).membership.voters.length, 3);
    },
    { start: "form" },
  );
});

/**
 * Has the leader remove node `id` with a client write carried in the same entry (as `mill
 * remove` carries NodeRemove), and steps until the write took effect: the removal with it.
 */
async function removeWithWrite(cluster: SimCluster, id: NodeId, value: string): Promise<ClientOp> {
  const leader = cluster.leader();
  const op = cluster.submit(leader, write("removed", value), 100 + id, (driver, data) =>
    driver.removeServer(id, data),
  );
  assert.ok(op, `leader ${leader} took the removal of node ${id}`);
  await cluster.runUntil(
    () => op.ret !== undefined || op.failed === true,
    50 * cluster.options.electionTicks,
    `the removal of node ${id}`,
  );
  assert.equal(op.failed, undefined, `the removal of node ${id} committed`);
  return op;
}

/** The nodes whose configuration no longer has `id`, and what they applied at `removed`. */
function assertRemovedEverywhere(cluster: SimCluster, id: NodeId, value: string): void {
  for (const node of cluster.up()) {
    if (node.id === id) continue;
    assert.ok(!cluster.status(node.id).membership.voters.includes(id), `n${node.id} dropped ${id}`);
    assert.equal(node.kv.get("removed"), value, `n${node.id} applied the removal's command`);
  }
}

describe("removing and recovering nodes", () => {
  scenario(
    "remove a follower: one entry commits the removal and its command",
    5,
    async (cluster) => {
      await cluster.perform(write("x", "1"));
      const leader = cluster.leader();
      const [gone] = others(cluster, leader);
      await removeWithWrite(cluster, gone!, `n${gone}`);
      await cluster.awaitConvergence();
      assertRemovedEverywhere(cluster, gone!, `n${gone}`);
      // Left running and cut off from new entries, the removed node must not disturb the others.
      await cluster.run(20 * cluster.options.electionTicks);
      await writeConcurrently(cluster, 2, 3, 200 * cluster.options.electionTicks);
      assert.equal(cluster.status(cluster.leader()).membership.voters.length, 4);
    },
  );

  scenario("remove the leader after handing leadership over", 5, async (cluster) => {
    await cluster.perform(write("x", "1"));
    const old = cluster.leader();
    const [next] = others(cluster, old);
    void cluster
      .node(old)
      .driver!.transferLeadership(next!)
      .catch(() => {});
    await cluster.runUntil(
      () => cluster.leader() === next,
      20 * cluster.options.electionTicks,
      `leadership to move to n${next}`,
    );
    await removeWithWrite(cluster, old, `n${old}`);
    await cluster.awaitConvergence();
    assertRemovedEverywhere(cluster, old, `n${old}`);
    cluster.crash(old);
    await cluster.perform(write("x", "2"));
  });

  scenario("remove a partitioned node; it cannot disrupt once healed", 5, async (cluster) => {
    cluster.network.faults = UNRELIABLE;
    await cluster.perform(write("x", "1"));
    const leader = cluster.leader();
    const [cut] = others(cluster, leader);
    cluster.network.partition([cut!], others(cluster, cut!));
    await cluster.run(10 * cluster.options.electionTicks);
    await removeWithWrite(cluster, cut!, `n${cut}`);
    cluster.network.heal();
    await cluster.run(20 * cluster.options.electionTicks);
    await cluster.awaitConvergence();
    assertRemovedEverywhere(cluster, cut!, `n${cut}`);
    await cluster.perform(write("x", "2"));
  });

  scenario(
    "remove a node, then a fresh one joins in its place with a new id",
    3,
    async (cluster) => {
      await cluster.perform(write("x", "1"));
      const leader = cluster.leader();
      const [gone] = others(cluster, leader);
      await removeWithWrite(cluster, gone!, `n${gone}`);
      // Mill refuses the removed node's data dir: it never runs again; its name joins as a new id.
      cluster.crash(gone!);
      await cluster.addVoter(4);
      await cluster.perform(write("x", "2"));
      await cluster.awaitConvergence();
      const { voters } = cluster.status(cluster.leader()).membership;
      assert.deepEqual([...voters].sort(), [...others(cluster, gone!)].sort());
      assert.equal(cluster.node(4).kv.get("removed"), `n${gone}`);
    },
  );

  scenario(
    "an expired join: its learner entry goes in one entry with its command; a promoted node stays",
    3,
    async (cluster) => {
      await cluster.perform(write("x", "1"));
      // Node 4 was added as a learner and never caught up (its process never ran).
      await cluster.changeMembership({ op: "addLearner", id: 4 });
      const leader = cluster.leader();
      const op = cluster.submit(leader, write("expired", "n4"), 104, (driver, data) =>
        driver.removeLearner(4, data),
      );
      assert.ok(op, `leader ${leader} took the expiry`);
      await cluster.runUntil(
        () => op.ret !== undefined || op.failed === true,
        50 * cluster.options.electionTicks,
        "the expiry of node 4",
      );
      assert.equal(op.failed, undefined, "the expiry committed");
      await cluster.awaitConvergence();
      for (const node of cluster.up()) {
        const { voters, learners } = cluster.status(node.id).membership;
        assert.ok(![...voters, ...learners].includes(4), `n${node.id} dropped learner 4`);
        assert.equal(node.kv.get("expired"), "n4", `n${node.id} applied the expiry's command`);
      }
      // Node 5's promotion finished before its expiry ran: nothing is proposed, it stays a voter.
      await cluster.addVoter(5);
      const at = cluster.leader();
      const lastIndex = cluster.status(at).lastIndex;
      const late = cluster.submit(at, write("expired", "n5"), 105, (driver, data) =>
        driver.removeLearner(5, data),
      );
      await cluster.run(5 * cluster.options.electionTicks);
      assert.equal(late?.ret, undefined, "no expiry of a voter took effect");
      assert.equal(cluster.status(at).lastIndex, lastIndex, "nothing was proposed");
      assert.ok(cluster.status(at).membership.voters.includes(5));
    },
  );

  test("recover: a survivor of a lost majority continues alone with every entry it holds", async () => {
    const cluster = await SimCluster.withVoters(5, {
      seed: SEED,
      replay: `SIM_SEED=${SEED} node --import tsx --test --test-name-pattern="recover: a survivor" test/sim/scenarios.test.ts`,
    });
    await cluster.guard(async () => {
      await writeConcurrently(cluster, 2, 3, 200 * cluster.options.electionTicks);
      await cluster.awaitConvergence();
      const [survivor, ...dead] = [...cluster.nodes.keys()];
      for (const id of dead) cluster.crash(id);
      cluster.crash(survivor!);
      const disk = cluster.node(survivor!).disk;
      const before = disk.restore();
      const recovery = recoverAlone(before, survivor!, []);
      assert.equal(recovery.kept, before.entries.at(-1)?.index);
      disk.write({ kind: "entries", entries: recovery.entries });
      disk.write({ kind: "hardState", hardState: recovery.hardState });
      disk.sync();
      await cluster.restart(survivor!);
      await cluster.runUntil(
        () => cluster.leader() === survivor,
        20 * cluster.options.electionTicks,
        `n${survivor} to lead alone`,
      );
      assert.deepEqual(cluster.status(survivor!).membership, { voters: [survivor], learners: [] });
      const written = await cluster.perform(write("x", "after"), survivor);
      assert.ok(written.ret !== undefined);
      const readBack = await cluster.perform(read("x"), survivor);
      assert.deepEqual(readBack.output, { value: "after" });
      await cluster.awaitProgress(30 * cluster.options.electionTicks, dead);
    });
    cluster.checkLinearizable();
  });
});
