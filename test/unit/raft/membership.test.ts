/**
 * Single-server membership changes: effect on append, rollback, one at a time, leader removal,
 * learners, joiners, and the configuration codec.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { encode } from "cbor-x";
import { RaftCore } from "../../../lib/raft/core.ts";
import {
  applyMembershipChange,
  decodeMembership,
  decodeMembershipEntry,
  encodeMembership,
} from "../../../lib/raft/membership.ts";
import { MembershipPendingError } from "../../../lib/raft/types.ts";
import { bytes, Net } from "./net.ts";

const fresh = { hardState: { term: 0, vote: 0, commit: 0 }, entries: [] };

test("membership codec round-trips and rejects malformed bytes", () => {
  const m = { voters: [1, 2], learners: [7] };
  assert.deepEqual(decodeMembership(encodeMembership(m)), m);
  assert.throws(() => decodeMembership(bytes("nope")), /membership entry/);
  assert.throws(() => decodeMembership(encodeMembership({ voters: [0], learners: [] })), /pair/);
});

test("a membership entry carries an optional command; anything else beside the pair is refused", () => {
  const m = { voters: [1, 2], learners: [] };
  const command = bytes("NodeRemove 3");
  assert.deepEqual(decodeMembershipEntry(encodeMembership(m, command)), { membership: m, command });
  assert.deepEqual(decodeMembershipEntry(encodeMembership(m)), { membership: m });
  assert.deepEqual(decodeMembership(encodeMembership(m, command)), m);
  assert.throws(
    () => decodeMembership(encode([[1, 2], [], "not bytes"])),
    /pair of node ids with an optional command/,
  );
  assert.throws(() => decodeMembership(encode([[1, 2], [], command, command])), /pair/);
});

test("membership changes are validated with clear messages", () => {
  const m = { voters: [1, 2], learners: [3] };
  assert.deepEqual(applyMembershipChange(m, { op: "promote", id: 3 }), {
    voters: [1, 2, 3],
    learners: [],
  });
  assert.throws(() => applyMembershipChange(m, { op: "addLearner", id: 2 }), /already a member/);
  assert.throws(() => applyMembershipChange(m, { op: "promote", id: 2 }), /not a learner/);
  assert.throws(() => applyMembershipChange(m, { op: "remove", id: 9 }), /not a member/);
  assert.throws(() => applyMembershipChange(m, { op: "addLearner", id: -1 }), /invalid node id/);
  const single = { voters: [1], learners: [] };
  assert.throws(() => applyMembershipChange(single, { op: "remove", id: 1 }), /last voter/);
  assert.throws(() => applyMembershipChange(single, { op: "demote", id: 1 }), /last voter/);
});

test("bootstrap: a single voter elects itself and commits alone", () => {
  const core = new RaftCore(
    { id: 5, electionTicks: 10, heartbeatTicks: 1, random: () => 0.5 },
    RaftCore.bootstrap(5),
  );
  assert.deepEqual(core.status().membership, { voters: [5], learners: [] });
  core.tick();
  assert.equal(core.status().role, "leader", "the only voter needs no election timeout");
  const { index } = core.propose(bytes("x"));
  const rd = core.ready();
  assert.deepEqual(
    rd.committed.map((e) => e.index),
    [1, 2, index],
    "committed entries replay from the snapshot (here: from the start)",
  );
  assert.equal(rd.messages.length, 0);
});

test("one pending change at a time, only after this term's noop committed, invalid ones refused", () => {
  const net = Net.cluster([1, 2, 3]);
  const leader = net.campaignUntilLeader(1);
  net.isolated.add(2).add(3);
  net.stabilize();
  const lastIndex = leader.status().lastIndex;
  assert.throws(
    () => leader.proposeMembership({ op: "addLearner", id: 4 }),
    (e: unknown) => e instanceof MembershipPendingError && e.waitingFor === "leader's first entry",
  );
  net.isolated.clear();
  net.tick(1);
  net.stabilize();
  assert.throws(
    () => leader.proposeMembership({ op: "promote", id: 4 }),
    (e: unknown) => !(e instanceof MembershipPendingError) && /not a learner/.test(String(e)),
    "an invalid change is refused as invalid, not as pending",
  );
  assert.equal(leader.status().lastIndex, lastIndex, "refusals change nothing");
  const { index } = leader.proposeMembership({ op: "addLearner", id: 4 });
  assert.throws(
    () => leader.proposeMembership({ op: "promote", id: 4 }),
    (e: unknown) =>
      e instanceof MembershipPendingError &&
      e.waitingFor === "previous change" &&
      e.index === index,
  );
  net.stabilize();
  leader.proposeMembership({ op: "promote", id: 4 });
  assert.throws(() => net.core(2).proposeMembership({ op: "remove", id: 3 }), /leader is node 1/);
});

test("pending configuration at leader change", () => {
  const net = Net.cluster([1, 2, 3]);
  net.elect(1);
  // The change reaches node 2 only and its acknowledgement is lost; then the leader dies.
  net.isolated.add(3);
  net.drop = (m) => m.type === "appendResp";
  const { index } = net.core(1).proposeMembership({ op: "addLearner", id: 4 });
  net.stabilize();
  net.crash(1);
  net.isolated.clear();
  net.drop = () => false;
  const s2 = net.core(2).status();
  assert.ok(s2.commit < index);
  assert.deepEqual(s2.membership, { voters: [1, 2, 3], learners: [4] }, "in force once appended");
  // Node 3 lacks the change, so only node 2 can win.
  net.tick(3, 10);
  const core2 = net.campaignUntilLeader(2);
  assert.throws(() => core2.proposeMembership({ op: "promote", id: 4 }), /not committed yet/);
  net.stabilize();
  assert.ok(core2.status().commit >= index, "the inherited change committed with the new noop");
  core2.proposeMembership({ op: "promote", id: 4 });
  assert.deepEqual(core2.status().membership, { voters: [1, 2, 3, 4], learners: [] });
});

test("configuration rollback on truncation", () => {
  const net = Net.cluster([1, 2, 3]);
  net.elect(1);
  net.isolated.add(1);
  net.core(1).proposeMembership({ op: "addLearner", id: 4 });
  net.stabilize();
  assert.deepEqual(net.core(1).status().membership.learners, [4]);
  for (let i = 0; i < 100 && net.core(2).status().role !== "leader"; i++) {
    net.tickAll();
    net.stabilize();
    if (net.core(3).status().role === "leader") break;
  }
  const leader = [2, 3].find((id) => net.core(id).status().role === "leader")!;
  assert.ok(leader);
  net.isolated.clear();
  net.propose(leader, "after heal");
  net.tickAll();
  net.stabilize();
  const s1 = net.core(1).status();
  assert.equal(s1.leader, leader);
  assert.deepEqual(s1.membership, { voters: [1, 2, 3], learners: [] }, "reverted");
  assert.deepEqual(net.persistedLog(1), net.persistedLog(leader));
});

test("remove the leader: it steps down once the change commits and never campaigns again", () => {
  const net = Net.cluster([1, 2, 3]);
  net.elect(1);
  net.core(1).proposeMembership({ op: "remove", id: 1 });
  assert.deepEqual(net.core(1).status().membership.voters, [2, 3]);
  assert.equal(net.core(1).status().role, "leader", "leads until the change commits");
  net.stabilize();
  assert.equal(net.core(1).status().role, "follower");
  const leader = [2, 3].find((id) => net.core(id).status().role === "leader");
  assert.ok(leader, "an up-to-date voter took over at once");
  const mark = net.delivered.length;
  for (let i = 0; i < 50; i++) {
    net.tickAll();
    net.stabilize();
  }
  assert.equal(net.delivered.slice(mark).filter((m) => m.from === 1).length, 0, "node 1 is silent");
  net.propose(leader, "without 1");
  net.stabilize();
  assert.deepEqual(net.applied.get(leader === 2 ? 3 : 2), ["without 1"]);
});

test("re-add a removed node under a new id (a fresh joiner waits, learns, is promoted)", () => {
  const net = Net.cluster([1, 2, 3]);
  net.elect(1);
  net.propose(1, "before");
  net.core(1).proposeMembership({ op: "remove", id: 3 });
  net.stabilize();
  net.crash(3);
  const joiner = net.add(4, fresh);
  for (let i = 0; i < 50; i++) joiner.tick();
  assert.equal(joiner.hasReady(), false, "a joiner with an empty log just waits");
  net.core(1).proposeMembership({ op: "addLearner", id: 4 });
  net.stabilize();
  assert.deepEqual(net.persistedLog(4), net.persistedLog(1));
  assert.deepEqual(net.applied.get(4), ["before"]);
  for (let i = 0; i < 50; i++) joiner.tick();
  assert.equal(joiner.status().role, "follower", "a learner never campaigns");
  net.core(1).proposeMembership({ op: "promote", id: 4 });
  net.stabilize();
  net.crash(2);
  net.propose(1, "with 4");
  net.stabilize();
  assert.deepEqual(net.applied.get(4), ["before", "with 4"], "1 and 4 form the quorum");
  assert.deepEqual(joiner.status().membership, { voters: [1, 2, 4], learners: [] });
});

test("a non-voter never counts toward commit and never campaigns, but grants votes", () => {
  const net = Net.cluster([1, 2, 3]);
  net.elect(1);
  net.add(4, fresh);
  net.core(1).proposeMembership({ op: "addLearner", id: 4 });
  net.stabilize();
  const commit = net.core(1).status().commit;
  net.isolated.add(2).add(3);
  const { index } = net.propose(1, "x");
  net.stabilize();
  const s = net.core(1).status();
  assert.equal(s.progress?.[4]?.match, index, "the learner has it");
  assert.equal(s.commit, commit, "leader + learner is no quorum");
  net.isolated.clear();
  const vote = { type: "vote", from: 2, to: 4, term: 9, lastIndex: 99, lastTerm: 9 } as const;
  net.deliver([{ ...vote, transfer: true }]);
  const answer = net.collect().find((m) => m.from === 4);
  // Its promotion may be committed elsewhere before it arrives here, so it must not refuse.
  assert.ok(answer?.type === "voteResp" && !answer.reject);
  for (let tick = 0; tick < 100; tick++) net.core(4).tick();
  const campaign = net.collect().filter((m) => m.from === 4 && /vote/i.test(m.type));
  assert.deepEqual(campaign, [], "a learner never campaigns");
});

test("compaction keeps the membership in the snapshot meta", () => {
  const net = Net.cluster([1, 2, 3]);
  net.elect(1);
  net.propose(1, "a");
  net.stabilize();
  const before = net.core(1).status().applied;
  const { index } = net.core(1).proposeMembership({ op: "addLearner", id: 4 });
  net.stabilize();
  const early = net.core(2).compact(before, bytes("s1"));
  assert.deepEqual(early?.meta.membership, { voters: [1, 2, 3], learners: [] });
  const late = net.core(2).compact(index, bytes("s2"));
  assert.deepEqual(late?.meta, {
    index,
    term: 2,
    membership: { voters: [1, 2, 3], learners: [4] },
  });
  const restarted = new RaftCore(
    { id: 2, electionTicks: 10, heartbeatTicks: 1, random: () => 0 },
    { hardState: net.storage.get(2)!.hardState, snapshot: late, entries: [] },
  );
  assert.deepEqual(restarted.status().membership, { voters: [1, 2, 3], learners: [4] });
  assert.equal(restarted.status().commit, index);
});

test("a voter whose own removal is uncommitted still campaigns when the others need it (thesis 4.2.2)", () => {
  const net = Net.cluster([1, 2, 3, 4]);
  net.elect(2);
  // Node 2 appends its own removal, which reaches nobody; then it restarts as a follower.
  net.isolated.add(2);
  const { index } = net.core(2).proposeMembership({ op: "remove", id: 2 });
  net.stabilize();
  net.crash(2);
  net.start(2);
  net.isolated.clear();
  // With node 4 down, 1 and 3 need node 2's vote, which its longer log refuses them.
  net.crash(4);
  for (
    let i = 0;
    i < 200 && (net.core(2).status().commit < index || !net.leaderAmong([1, 3]));
    i++
  ) {
    net.tickAll();
    net.stabilize();
  }
  assert.ok(net.core(2).status().commit >= index, "node 2 led long enough to commit its removal");
  assert.deepEqual(net.core(1).status().membership.voters, [1, 3, 4]);
  assert.ok(net.leaderAmong([1, 3]), "then one of the remaining voters leads");
  assert.notEqual(net.core(2).status().role, "leader", "the removed node stepped down");
});
