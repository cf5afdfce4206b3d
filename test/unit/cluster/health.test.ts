import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeCommand } from "../../../lib/cluster/commands.ts";
import { HeartbeatTable, watchdog } from "../../../lib/cluster/health.ts";
import { applied, init, register } from "./fixtures.ts";

const TIMEOUT = 15_000;
/** Nodes 1-3 are voters; a join expires after a minute. */
const JOINS = { isVoter: (id: number) => id <= 3, expiryMs: 60_000 };
/** Three nodes registered at t=2000; node 1 is the leader. */
function cluster() {
  return applied([init(), register("node-1", 1), register("node-2", 2), register("node-3", 3)]).fsm;
}

describe("watchdog", () => {
  test("a node silent for longer than the timeout is marked down, not at exactly the timeout", () => {
    const fsm = cluster();
    const table = new HeartbeatTable();
    table.becameLeader(2000);
    table.heard(2, 10_000);
    table.heard(3, 10_000);
    assert.deepEqual(watchdog(fsm.state, table, 25_000, TIMEOUT, 1, JOINS), []);
    table.heard(3, 20_000);
    assert.deepEqual(watchdog(fsm.state, table, 25_001, TIMEOUT, 1, JOINS), [
      { type: "NodeDown", id: 2, at: 25_001 },
    ]);
  });

  test("the leader's own node is never marked down and comes back up if an old leader marked it", () => {
    const fsm = cluster();
    const table = new HeartbeatTable();
    table.becameLeader(0);
    table.heard(2, 100_000);
    table.heard(3, 100_000);
    assert.deepEqual(watchdog(fsm.state, table, 100_000, TIMEOUT, 1, JOINS), []);
    fsm.apply(10, encodeCommand({ type: "NodeDown", id: 1, at: 50_000 }));
    assert.deepEqual(watchdog(fsm.state, table, 100_000, TIMEOUT, 1, JOINS), [
      { type: "NodeUp", id: 1, at: 100_000 },
    ]);
  });

  test("a down node is brought up when heard again, and stays down while silent", () => {
    const fsm = cluster();
    fsm.apply(10, encodeCommand({ type: "NodeDown", id: 3, at: 30_000 }));
    const table = new HeartbeatTable();
    table.becameLeader(40_000);
    table.heard(2, 40_000);
    assert.deepEqual(watchdog(fsm.state, table, 41_000, TIMEOUT, 1, JOINS), []);
    table.heard(3, 42_000);
    assert.deepEqual(watchdog(fsm.state, table, 43_000, TIMEOUT, 1, JOINS), [
      { type: "NodeUp", id: 3, at: 43_000 },
    ]);
  });

  test("a new leader gives every node a fresh full window and forgets old heartbeats", () => {
    const fsm = cluster();
    fsm.apply(10, encodeCommand({ type: "NodeDown", id: 3, at: 30_000 }));
    const table = new HeartbeatTable();
    table.becameLeader(0);
    table.heard(3, 29_000);
    table.becameLeader(35_000);
    assert.equal(table.lastHeard(3), undefined);
    assert.deepEqual(watchdog(fsm.state, table, 35_000 + TIMEOUT, TIMEOUT, 1, JOINS), []);
    assert.deepEqual(watchdog(fsm.state, table, 35_001 + TIMEOUT, TIMEOUT, 1, JOINS), [
      { type: "NodeDown", id: 2, at: 35_001 + TIMEOUT },
    ]);
  });

  test("a node that just joined or came back gets a full window from its status change", () => {
    const fsm = cluster();
    const table = new HeartbeatTable();
    table.becameLeader(0);
    table.heard(2, 100_000);
    table.heard(3, 100_000);
    fsm.apply(10, encodeCommand(register("node-4", 4, { at: 95_000 })));
    assert.deepEqual(watchdog(fsm.state, table, 100_000, TIMEOUT, 1, JOINS), []);
    assert.deepEqual(
      watchdog(fsm.state, table, 110_001, TIMEOUT, 1, JOINS).map((c) => c.id),
      [4],
    );
  });

  test("a joining node becomes ready once it is a voter, and never by heartbeats", () => {
    const fsm = cluster();
    fsm.apply(10, encodeCommand(register("node-4", 4, { at: 95_000, joining: true })));
    fsm.apply(11, encodeCommand(register("node-5", 5, { at: 95_000, joining: true })));
    assert.deepEqual(
      [4, 5].map((id) => fsm.state.nodes.get(id)?.status),
      ["joining", "joining"],
    );
    const table = new HeartbeatTable();
    table.becameLeader(0);
    for (const id of [2, 3, 4, 5]) table.heard(id, 100_000);
    const joins = { isVoter: (id: number) => id <= 4, expiryMs: 60_000 };
    assert.deepEqual(watchdog(fsm.state, table, 100_000, TIMEOUT, 1, joins), [
      { type: "NodeUp", id: 4, at: 100_000 },
    ]);
  });

  test("a join that never made its node a voter expires: NodeRemove, not before its time", () => {
    const fsm = cluster();
    fsm.apply(10, encodeCommand(register("node-4", 4, { at: 95_000, joining: true })));
    const table = new HeartbeatTable();
    table.becameLeader(0);
    table.heard(2, 155_000);
    table.heard(3, 155_000);
    assert.deepEqual(watchdog(fsm.state, table, 155_000, TIMEOUT, 1, JOINS), []);
    assert.deepEqual(watchdog(fsm.state, table, 155_001, TIMEOUT, 1, JOINS), [
      { type: "NodeRemove", id: 4, at: 155_001 },
    ]);
    fsm.apply(12, encodeCommand({ type: "NodeRemove", id: 4, at: 155_001 }));
    assert.equal(fsm.state.nodes.get(4)?.status, "left");
  });

  test("left nodes are ignored", () => {
    const fsm = cluster();
    fsm.apply(10, encodeCommand({ type: "NodeRemove", id: 2, at: 2000 }));
    const table = new HeartbeatTable();
    table.becameLeader(0);
    table.heard(3, 90_000);
    assert.deepEqual(watchdog(fsm.state, table, 100_000, TIMEOUT, 1, JOINS), []);
  });

  test("a late heartbeat never moves the last-seen time backwards", () => {
    const table = new HeartbeatTable();
    table.heard(2, 5000);
    table.heard(2, 4000);
    assert.equal(table.lastHeard(2), 5000);
    table.heard(3, 6000);
    assert.deepEqual(table.ages(7000), { 2: 2000, 3: 1000 });
  });
});
