import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type ApplyResult, type Command, encodeCommand } from "../../../lib/cluster/commands.ts";
import { Watchdog } from "../../../lib/node/watchdog.ts";
import type { RaftStatus } from "../../../lib/raft/types.ts";
import type { NodeResources } from "../../../lib/shared/node-facts.ts";
import { applied, GiB, init, register } from "../cluster/fixtures.ts";

const TIMEOUT = 15_000;

const JOIN_EXPIRY = 60_000;

/**
 * Node 1 of three registered at t=2000, leading term 5 unless the test says otherwise; node 4
 * registered then too, still joining. Removals of expired joins go through `expireJoin`, which
 * waits for `removalQueued` (Raft's membership queue) and answers as RaftNode.removeLearner does.
 * The leader's own host measures `own`. The cluster speaks protocol 1.2 (which NodeResources
 * needs) unless `baseline`, where it never committed one.
 */
function setup(
  removalQueued: Promise<void> = Promise.resolve(),
  own: NodeResources = { cores: 4, memoryBytes: 8 * GiB },
  baseline = false,
) {
  const { fsm } = applied([
    init(),
    register("node-1", 1),
    register("node-2", 2),
    register("node-3", 3),
    register("node-4", 4, { joining: true }),
    ...(baseline ? [] : [{ type: "ClusterProtocol", major: 1, minor: 2 } as const]),
  ]);
  let now = 2000;
  let status: RaftStatus = {
    id: 1,
    role: "leader",
    term: 5,
    leader: 1,
    commit: 10,
    applied: 10,
    lastIndex: 10,
    membership: { voters: [1, 2, 3], learners: [4] },
  };
  const proposed: Command[] = [];
  const expired: Command[] = [];
  /** The hello of the leader's Raft connection to each peer: all on 1.2 unless a test changes it. */
  const connections = new Map<number, { major: number; minor: number }>(
    [2, 3, 4].map((id) => [id, { major: 1, minor: 2 }]),
  );
  const logged: string[] = [];
  const watchdog = new Watchdog({
    self: 1,
    raft: { status: () => status },
    state: () => fsm.state,
    propose: async (command) => {
      proposed.push(command);
      return fsm.apply(100 + proposed.length, encodeCommand(command)) as ApplyResult;
    },
    expireJoin: async (removal) => {
      expired.push(removal);
      await removalQueued;
      if (status.membership.voters.includes(removal.id)) return undefined;
      return fsm.apply(200 + expired.length, encodeCommand(removal)) as ApplyResult;
    },
    timeoutMs: TIMEOUT,
    joinExpiryMs: JOIN_EXPIRY,
    ownResources: () => own,
    peerProtocol: (id) => connections.get(id),
    log: { info: (line: string) => logged.push(line), warn: () => {} },
    now: () => now,
  });
  return {
    watchdog,
    connections,
    proposed,
    expired,
    logged,
    fsm,
    at: (time: number) => {
      now = time;
    },
    become: (next: Partial<RaftStatus>) => {
      status = { ...status, ...next } as RaftStatus;
    },
  };
}

describe("the leader's watchdog loop", () => {
  test("acts only in the term whose window it opened", async () => {
    const { watchdog, proposed, at, become } = setup();
    at(100_000);
    await watchdog.tick();
    const types = () => proposed.map((command) => command.type);
    assert.deepEqual(types(), [], "Raft says leader, but no window is open for term 5 yet");
    watchdog.becameLeader(5);
    become({ term: 6 });
    at(200_000);
    await watchdog.tick();
    assert.deepEqual(types(), [], "a newer term's window is not open");
    become({ term: 5 });
    await watchdog.tick();
    assert.deepEqual(types(), ["NodeDown", "NodeDown"]);
  });

  test("an expired join, a learner by then, is removed through expireJoin, learner entry and all", async () => {
    const { watchdog, proposed, expired, at, fsm } = setup();
    at(10_000);
    watchdog.becameLeader(5);
    for (const id of [2, 3]) watchdog.heartbeats.heard(id, 10_000);
    at(2000 + JOIN_EXPIRY + 1);
    for (const id of [2, 3]) watchdog.heartbeats.heard(id, 2000 + JOIN_EXPIRY);
    await watchdog.tick();
    await watchdog.tick();
    await watchdog.expiries;
    assert.deepEqual(proposed, [], "a plain NodeRemove would leave the learner behind");
    assert.deepEqual(expired, [{ type: "NodeRemove", id: 4, at: 2000 + JOIN_EXPIRY + 1 }]);
    assert.equal(fsm.state.nodes.get(4)?.status, "left");
  });

  test("a removal waiting in Raft's membership queue holds up neither the tick nor a NodeDown, and is not started twice", async () => {
    let release = () => {};
    const queued = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { watchdog, proposed, expired, at, fsm } = setup(queued);
    at(10_000);
    watchdog.becameLeader(5);
    at(2000 + JOIN_EXPIRY + 1);
    watchdog.heartbeats.heard(2, 2000 + JOIN_EXPIRY);
    await watchdog.tick();
    await watchdog.tick();
    assert.deepEqual(
      proposed,
      [{ type: "NodeDown", id: 3, at: 2000 + JOIN_EXPIRY + 1 }],
      "node-3 is marked down while node-4's removal waits",
    );
    assert.equal(fsm.state.nodes.get(4)?.status, "joining");
    release();
    await watchdog.expiries;
    assert.equal(expired.length, 1);
    assert.equal(fsm.state.nodes.get(4)?.status, "left");
  });

  test("does nothing as a follower, and marks a node down only after a full silent window", async () => {
    const { watchdog, proposed, at, become, fsm } = setup();
    at(10_000);
    watchdog.becameLeader(5);
    watchdog.heartbeats.heard(2, 10_000);
    at(10_000 + TIMEOUT + 1);
    become({ role: "follower" });
    await watchdog.tick();
    assert.equal(proposed.length, 0);
    become({ role: "leader" });
    watchdog.heartbeats.heard(3, 10_000 + TIMEOUT);
    await watchdog.tick();
    assert.deepEqual(proposed, [{ type: "NodeDown", id: 2, at: 10_000 + TIMEOUT + 1 }]);
    assert.equal(fsm.state.nodes.get(2)?.status, "down");
  });

  test("reports heartbeat ages: 0 for itself, undefined for a node it has not heard", () => {
    const { watchdog, at } = setup();
    at(50_000);
    watchdog.becameLeader(5);
    watchdog.heartbeats.heard(2, 48_000);
    assert.equal(watchdog.age(1), 0);
    assert.equal(watchdog.age(2), 2000);
    assert.equal(watchdog.age(3), undefined);
  });

  test("commits the resources a heartbeat measured once, when they differ from the record", async () => {
    const { watchdog, proposed, logged, at, fsm } = setup();
    at(10_000);
    watchdog.becameLeader(5);
    const measured = { cores: 2, memoryBytes: 3 * GiB };
    for (const time of [10_100, 10_200]) {
      at(time);
      watchdog.heartbeats.heard(2, time, { resources: measured });
      watchdog.heartbeats.heard(3, time, { resources: { cores: 4, memoryBytes: 8 * GiB } });
      await watchdog.tick();
    }
    assert.deepEqual(proposed, [{ type: "NodeResources", id: 2, resources: measured }]);
    assert.deepEqual(fsm.state.nodes.get(2)?.resources, measured);
    assert.deepEqual(logged, [
      "node node-2 measured 2 cores, 3G on its host; its record said 4 cores, 8G",
    ]);
  });

  test("a report beyond the bounds is never committed", async () => {
    const { watchdog, proposed, at, fsm } = setup();
    at(10_000);
    watchdog.becameLeader(5);
    watchdog.heartbeats.heard(2, 10_000, { resources: { cores: 1_000_000, memoryBytes: GiB } });
    await watchdog.tick();
    assert.deepEqual(proposed, []);
    assert.equal(fsm.state.nodes.get(2)?.resources.cores, 4);
  });

  test("the leader commits its own host's resources, which it sends no heartbeat for", async () => {
    const own = { cores: 1, memoryBytes: GiB };
    const { watchdog, proposed, at } = setup(undefined, own);
    at(10_000);
    watchdog.becameLeader(5);
    watchdog.heartbeats.heard(2, 10_000);
    watchdog.heartbeats.heard(3, 10_000);
    await watchdog.tick();
    await watchdog.tick();
    assert.deepEqual(proposed, [{ type: "NodeResources", id: 1, resources: own }]);
  });

  test("holds NodeResources back until every member showed 1.2, then raises the cluster protocol and commits them", async () => {
    const { watchdog, proposed, logged, at, become, fsm } = setup(undefined, undefined, true);
    at(10_000);
    watchdog.becameLeader(5);
    become({ membership: { voters: [1, 2, 3, 4], learners: [] } });
    const measured = { cores: 2, memoryBytes: 3 * GiB };
    const beat = (time: number, node3: { major: number; minor: number }) => {
      at(time);
      watchdog.heartbeats.heard(2, time, { resources: measured, protocol: { major: 1, minor: 2 } });
      watchdog.heartbeats.heard(3, time, { protocol: node3 });
      watchdog.heartbeats.heard(4, time, { protocol: { major: 1, minor: 2 } });
    };
    beat(10_100, { major: 1, minor: 1 });
    await watchdog.tick();
    await watchdog.tick();
    assert.deepEqual(proposed, [{ type: "NodeUp", id: 4, at: 10_100 }], "node-3 speaks 1.1");
    assert.deepEqual(fsm.state.nodes.get(2)?.resources, { cores: 4, memoryBytes: 8 * GiB });
    beat(10_200, { major: 1, minor: 2 });
    await watchdog.tick();
    assert.deepEqual(proposed.slice(1), [
      { type: "ClusterProtocol", major: 1, minor: 2 },
      { type: "NodeResources", id: 2, resources: measured },
    ]);
    assert.ok(
      logged.includes("every node speaks protocol 1.2: the cluster does now"),
      logged.join("\n"),
    );
    await watchdog.tick();
    assert.equal(proposed.length, 3, "nothing more once committed");
  });

  test("a new leader has heard nobody's protocol yet: it raises nothing until it has", async () => {
    const { watchdog, proposed, at, become } = setup(undefined, undefined, true);
    at(10_000);
    watchdog.becameLeader(5);
    become({ membership: { voters: [1, 2, 3, 4], learners: [] } });
    for (const id of [2, 3, 4])
      watchdog.heartbeats.heard(id, 10_000, { protocol: { major: 1, minor: 2 } });
    at(11_000);
    become({ term: 6 });
    watchdog.becameLeader(6);
    watchdog.heartbeats.heard(2, 11_000, { protocol: { major: 1, minor: 2 } });
    await watchdog.tick();
    assert.deepEqual(
      proposed.map((command) => command.type),
      ["NodeUp"],
      "node-3 and node-4 have not shown theirs to this leadership",
    );
  });

  test("a member counts only while its heartbeat and its Raft connection's hello both show the minor", async () => {
    const { watchdog, connections, proposed, at, become } = setup(undefined, undefined, true);
    at(10_000);
    watchdog.becameLeader(5);
    become({ membership: { voters: [1, 2, 3, 4], learners: [] } });
    for (const id of [2, 3, 4]) {
      watchdog.heartbeats.heard(id, 10_000, { protocol: { major: 1, minor: 2 } });
    }
    connections.delete(3);
    await watchdog.tick();
    connections.set(3, { major: 1, minor: 1 });
    await watchdog.tick();
    assert.deepEqual(
      proposed.map((command) => command.type),
      ["NodeUp"],
      "node-3 restarting (no connection), then saying hello as 1.1",
    );
    connections.set(3, { major: 1, minor: 2 });
    await watchdog.tick();
    assert.deepEqual(proposed.at(-1), { type: "ClusterProtocol", major: 1, minor: 2 });
  });
});
