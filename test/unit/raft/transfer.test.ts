/**
 * Leadership transfer: catch the target up, send timeoutNow, abort on timeout or removal.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { NotLeaderError } from "../../../lib/raft/types.ts";
import { bytes, Net } from "./net.ts";

test("leadership transfer to an up-to-date target", () => {
  const net = Net.cluster([1, 2, 3]);
  net.elect(1);
  const mark = net.delivered.length;
  net.core(1).transferLeadership(2);
  net.stabilize();
  assert.deepEqual(
    net.deliveredOf("timeoutNow", mark).map((m) => [m.from, m.to]),
    [[1, 2]],
  );
  assert.ok(net.deliveredOf("vote", mark).every((m) => m.transfer === true));
  assert.equal(net.deliveredOf("preVote", mark).length, 0, "the target skips PreVote");
  for (const id of [1, 2, 3]) {
    assert.equal(net.core(id).status().leader, 2);
    assert.equal(net.core(id).status().term, 3);
  }
});

test("leadership transfer to a slow target: it catches up first", () => {
  const net = Net.cluster([1, 2, 3]);
  net.elect(1);
  net.isolated.add(3);
  for (let i = 0; i < 5; i++) net.propose(1, `w${i}`);
  net.stabilize();
  net.isolated.delete(3);
  const lastIndex = net.core(1).status().lastIndex;
  net.core(1).transferLeadership(3);
  net.stabilize();
  assert.equal(net.deliveredOf("timeoutNow").length, 0, "not before the target has the log");
  net.tick(1);
  net.stabilize();
  const timeoutNow = net.delivered.findIndex((m) => m.type === "timeoutNow");
  const caughtUp = net.delivered.findIndex(
    (m) => m.type === "appendResp" && m.from === 3 && !m.reject && m.index === lastIndex,
  );
  assert.ok(caughtUp >= 0 && caughtUp < timeoutNow);
  assert.equal(net.core(3).status().role, "leader");
  assert.deepEqual(net.applied.get(3), ["w0", "w1", "w2", "w3", "w4"]);
});

test("proposals rejected during transfer, pointing at the target", () => {
  const net = Net.cluster([1, 2, 3]);
  net.elect(1);
  net.isolated.add(3);
  net.core(1).transferLeadership(3);
  assert.throws(
    () => net.propose(1, "x"),
    (e: unknown) => e instanceof NotLeaderError && e.leader === 3,
  );
  assert.throws(() => net.core(2).transferLeadership(3), NotLeaderError);
  net.add(4, { hardState: { term: 0, vote: 0, commit: 0 }, entries: [] });
  assert.throws(() => net.core(1).transferLeadership(4), /not a voter/);
});

test("leadership transfer times out after an election timeout and is aborted", () => {
  const net = Net.cluster([1, 2, 3]);
  net.elect(1);
  net.isolated.add(3);
  net.core(1).transferLeadership(3);
  for (let i = 0; i < 9; i++) {
    net.tick(1);
    net.stabilize();
  }
  assert.throws(() => net.propose(1, "x"), NotLeaderError);
  net.tick(1);
  net.stabilize();
  assert.equal(net.core(1).status().role, "leader");
  net.propose(1, "after abort");
  net.stabilize();
  assert.deepEqual(net.applied.get(2), ["after abort"]);
});

test("leadership transfer aborts when the target is removed", () => {
  const net = Net.cluster([1, 2, 3]);
  net.elect(1);
  net.isolated.add(3);
  net.core(1).transferLeadership(3);
  net.core(1).proposeMembership({ op: "remove", id: 3 });
  net.core(1).propose(bytes("accepted again"));
  net.stabilize();
  assert.equal(net.core(1).status().role, "leader");
  assert.deepEqual(net.applied.get(2), ["accepted again"]);
});
