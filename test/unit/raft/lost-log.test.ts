/**
 * A node whose snapshot on disk proved unrestorable starts from RaftCore.afterLostLog: no log,
 * the same term and vote, and a catch-up point. These scripts show what it may and may not do
 * until its log is back, and how a leader that still counts its old acknowledgements finds out.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { RaftCore } from "../../../lib/raft/core.ts";
import type { Entry, Message, NodeId } from "../../../lib/raft/types.ts";
import { bytes, Net, ofType } from "./net.ts";

/** Node `id` restarts having lost its snapshot and log, as the driver rebuilds it. */
function loseLog(net: Net, id: NodeId): void {
  const stored = net.storage.get(id)!;
  net.crash(id);
  const restore = RaftCore.afterLostLog({
    hardState: stored.hardState,
    snapshot: { index: stored.snapshot?.meta.index ?? 0, term: stored.snapshot?.meta.term },
    entries: stored.entries,
  });
  net.storage.set(id, { ...restore, entries: [] });
  net.start(id);
}

/** Three nodes led by node 1, each holding entries 1-12 (ten writes), all committed. */
function clusterAt12(): Net {
  const net = Net.cluster([1, 2, 3]);
  net.elect(1);
  for (let i = 0; i < 10; i++) net.propose(1, `w${i}`);
  net.stabilize();
  return net;
}

const entry = (index: number, term: number): Entry => ({
  index,
  term,
  kind: "command",
  data: bytes(`e${index}`),
});

test("the catch-up point: the last entry of the node's term, else its snapshot, kept from an earlier loss", () => {
  const hardState = { term: 5, vote: 2, commit: 9 };
  const point = (
    entries: Entry[],
    snapshot: { index: number; term?: number },
    earlier?: { term: number; index: number },
  ) =>
    RaftCore.afterLostLog({
      hardState: earlier ? { ...hardState, recovering: earlier } : hardState,
      snapshot,
      entries,
    }).hardState;
  // Term 5's entries end at 12; the stale tail of term 4 after them does not count.
  assert.deepEqual(point([entry(11, 5), entry(12, 5)], { index: 10, term: 4 }), {
    term: 5,
    vote: 2,
    commit: 0,
    recovering: { term: 5, index: 12 },
  });
  // No entry of term 5 at all: any entry of term 5 (its leader's noop) will do.
  assert.deepEqual(point([entry(11, 4), entry(12, 4)], { index: 10, term: 3 }).recovering, {
    term: 5,
    index: 0,
  });
  // The snapshot's term is unknown (its file was unreadable): it may have been 5.
  assert.deepEqual(point([entry(11, 4)], { index: 10 }).recovering, { term: 5, index: 10 });
  // Lost again before it caught up: the earlier point of the same term still holds.
  assert.deepEqual(point([], { index: 10, term: 5 }, { term: 5, index: 30 }).recovering, {
    term: 5,
    index: 30,
  });
});

test("a node that lost its log refuses votes and pre-votes and never campaigns", () => {
  const net = clusterAt12();
  net.compact(3, bytes("state at 12"));
  loseLog(net, 3);
  const recovering = net.core(3).status();
  assert.deepEqual(recovering.recovering, { term: 2, index: 12 });
  assert.deepEqual([recovering.term, recovering.lastIndex, recovering.commit], [2, 0, 0]);
  // Part of the way back (an older snapshot of the leader's): it knows the voters again.
  const older = { index: 5, term: 2, membership: { voters: [1, 2, 3], learners: [] } };
  net.deliver([
    { type: "snapshot", from: 1, to: 3, term: 2, snapshot: { meta: older, data: bytes("5") } },
  ]);
  net.collect();
  assert.deepEqual(net.core(3).status().membership.voters, [1, 2, 3]);
  assert.deepEqual(net.core(3).status().recovering, { term: 2, index: 12 });

  net.crash(1);
  net.tick(3, 100);
  assert.equal(net.core(3).status().role, "follower", "it does not campaign");
  assert.deepEqual(net.collect(), [], "not even a pre-vote");
  net.deliver([{ type: "timeoutNow", from: 1, to: 3, term: 2 }]);
  assert.equal(net.core(3).status().role, "follower", "nor when told to take over");

  const ask = (type: "preVote" | "vote", term: number): Message => ({
    type,
    from: 2,
    to: 3,
    term,
    lastIndex: 99,
    lastTerm: 9,
  });
  net.deliver([ask("preVote", 3), ask("vote", 3)]);
  const answers = net.collect().filter((m) => m.type === "preVoteResp" || m.type === "voteResp");
  assert.deepEqual(
    answers.map((m) => [m.type, "reject" in m && m.reject]),
    [
      ["preVoteResp", true],
      ["voteResp", true],
    ],
  );
  assert.equal(net.core(3).status().term, 3, "a higher term is still taken");
  assert.deepEqual(net.storage.get(3)!.hardState.recovering, { term: 2, index: 12 });
});

test("the only other holder of a committed entry is down: no leader is elected without it", () => {
  const net = Net.cluster([1, 2, 3]);
  net.elect(1);
  net.isolated.add(2);
  net.propose(1, "only on 1 and 3");
  net.stabilize();
  assert.equal(net.core(3).status().commit, 3, "committed by nodes 1 and 3");
  loseLog(net, 3);
  net.crash(1);
  net.isolated.delete(2);
  for (let i = 0; i < 20; i++) {
    net.tickAll(10);
    net.stabilize();
  }
  assert.ok(!net.leaderAmong([2, 3]), "node 2 lacks entry 3 and node 3 gives it no vote");

  // Node 1 returns and wins with node 2's vote; its noop (term 3) brings node 3 back.
  net.start(1);
  for (let i = 0; i < 20 && !net.leaderAmong([1]); i++) {
    net.tickAll();
    net.stabilize();
  }
  assert.equal(net.core(1).status().role, "leader");
  net.stabilize();
  const back = net.core(3).status();
  assert.equal(back.recovering, undefined, "caught up on term 3's noop, without a write");
  assert.equal(back.commit, 4);
  assert.deepEqual(net.applied.get(3), ["only on 1 and 3"]);
  assert.equal(net.storage.get(3)!.hardState.recovering, undefined, "and that is persisted");
});

test("a leader still counting a lost log's acknowledgements re-probes on its reply and sends a snapshot", () => {
  const net = clusterAt12();
  net.compact(1, bytes("state at 12"));
  net.compact(3, bytes("state at 12"));
  assert.equal(net.core(1).status().progress?.[3]?.match, 12);
  loseLog(net, 3);
  assert.deepEqual(net.core(3).status().recovering, { term: 2, index: 12 });

  // The point persists over a restart until it is reached.
  net.crash(3);
  net.start(3);
  assert.deepEqual(net.core(3).status().recovering, { term: 2, index: 12 });

  // An idle leader sends only heartbeats, which tell node 3 to commit what it no longer has.
  const from = net.delivered.length;
  net.tick(1);
  net.stabilize();
  const lost = net.deliveredOf("appendResp", from).filter((m) => m.logLost);
  assert.deepEqual(
    lost.map((m) => [m.from, m.reject, m.index, m.hintIndex]),
    [[3, true, 12, 0]],
  );
  const snapshots = net.deliveredOf("snapshot", from);
  assert.deepEqual(
    snapshots.map((m) => [m.to, m.snapshot.meta.index]),
    [[3, 12]],
  );
  const status = net.core(3).status();
  assert.equal(status.recovering, undefined);
  assert.deepEqual([status.lastIndex, status.applied], [12, 12]);
  assert.equal(net.storage.get(3)!.hardState.recovering, undefined);
  net.crash(3);
  assert.equal(net.start(3).status().recovering, undefined, "cleared for good");

  net.propose(1, "after");
  net.stabilize();
  assert.deepEqual(net.applied.get(3), ["after"]);
  assert.equal(net.core(1).status().progress?.[3]?.match, 13);
});

test("a leader replicating to a node that lost its log re-probes on its first rejection", () => {
  const net = Net.cluster([1, 2, 3], { maxInflight: 4 });
  net.elect(1);
  for (let i = 0; i < 5; i++) net.propose(1, `w${i}`);
  net.stabilize();
  loseLog(net, 3);
  const from = net.delivered.length;
  net.propose(1, "next");
  net.stabilize();
  const rejections = net.deliveredOf("appendResp", from).filter((m) => m.reject);
  assert.ok(rejections.length > 0 && rejections.every((m) => m.logLost));
  // Node 1 never compacted: it probes back to the start and sends the whole log.
  assert.deepEqual(net.persistedLog(3), ["1:1", "2:2", "3:2", "4:2", "5:2", "6:2", "7:2", "8:2"]);
  assert.equal(net.core(3).status().recovering, undefined);
  assert.deepEqual(net.applied.get(3), ["w0", "w1", "w2", "w3", "w4", "next"]);
});

test("a rejection at or below match from a follower that kept its log is still stale news", () => {
  const net = Net.cluster([1, 2, 3]);
  net.elect(1);
  for (let i = 0; i < 3; i++) net.propose(1, `w${i}`);
  net.stabilize();
  const match = net.core(1).status().progress?.[3]?.match;
  net.deliver([
    {
      type: "appendResp",
      from: 3,
      to: 1,
      term: 2,
      reject: true,
      index: 3,
      hintIndex: 0,
      hintTerm: 0,
    },
  ]);
  assert.deepEqual(ofType(net.collect(), "snapshot"), []);
  assert.equal(net.core(1).status().progress?.[3]?.match, match);
});
