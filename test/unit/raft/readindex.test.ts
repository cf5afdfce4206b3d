/**
 * ReadIndex: a read is served at the commit index once a quorum confirmed leadership and the
 * leader's noop committed; it fails when leadership is lost or no leader is known.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Net } from "./net.ts";

test("ReadIndex served only after quorum confirmation and noop commit", () => {
  const net = Net.cluster([1, 2, 3]);
  const leader = net.campaignUntilLeader(1);
  leader.readIndex(7);
  net.deliver(net.collect());
  assert.deepEqual(net.reads.get(1), [], "the noop is not committed yet");
  net.stabilize();
  assert.deepEqual(net.reads.get(1), [{ ctx: 7, index: 2 }], "served at the noop's index");

  net.propose(1, "w");
  net.stabilize();
  net.isolated.add(2).add(3);
  leader.readIndex(8);
  net.stabilize();
  assert.equal(net.reads.get(1)!.length, 1, "no quorum answered the heartbeat");
  net.isolated.clear();
  net.tick(1);
  net.stabilize();
  assert.deepEqual(net.reads.get(1)![1], { ctx: 8, index: 3 });

  net.core(2).readIndex(9);
  net.stabilize();
  assert.deepEqual(net.reads.get(2), [{ ctx: 9, index: 3 }], "a follower asks the leader");
});

test("a single voter serves reads at once", () => {
  const net = Net.cluster([1]);
  net.elect(1);
  net.core(1).readIndex(1);
  net.stabilize();
  assert.deepEqual(net.reads.get(1), [{ ctx: 1, index: 2 }]);
});

test("ReadIndex fails on leadership loss or with no leader", () => {
  const net = Net.cluster([1, 2, 3]);
  net.core(3).readIndex(4);
  net.stabilize();
  assert.deepEqual(net.failedReads.get(3), [4], "no leader known");

  net.elect(1);
  net.isolated.add(2).add(3);
  net.core(1).readIndex(5);
  net.stabilize();
  for (let i = 0; i < 20; i++) net.tick(1);
  net.stabilize();
  assert.equal(net.core(1).status().role, "follower");
  assert.deepEqual(net.failedReads.get(1), [5]);
  assert.deepEqual(net.reads.get(1), []);

  // Node 2 forwards a read; the leader is cut off before answering, and node 3 takes over.
  const other = Net.cluster([1, 2, 3]);
  other.elect(1);
  other.isolated.add(1);
  other.core(2).readIndex(6);
  other.stabilize();
  assert.deepEqual(other.failedReads.get(2), [], "still waiting for the leader");
  for (let i = 0; i < 100 && other.core(3).status().role !== "leader"; i++) {
    other.tick(2);
    other.tick(3);
    other.stabilize();
    if (other.core(2).status().role === "leader") break;
  }
  assert.deepEqual(other.failedReads.get(2), [6]);
  assert.deepEqual(other.reads.get(2), []);
});
