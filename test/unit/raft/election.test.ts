/**
 * Elections: timeouts, voting rules, PreVote, CheckQuorum, persisting the vote before asking.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { RaftCore } from "../../../lib/raft/core.ts";
import { seededRandom } from "../../../lib/raft/rng.ts";
import type { Message } from "../../../lib/raft/types.ts";
import { logWithTerms, Net, ofType } from "./net.ts";

test("initial election", () => {
  const net = Net.cluster([1, 2, 3]);
  net.elect(1);
  for (const id of [1, 2, 3]) {
    const s = net.core(id).status();
    assert.equal(s.leader, 1);
    assert.equal(s.term, 2);
    assert.equal(s.commit, 2, "the leader's noop commits everywhere");
  }
  assert.equal(net.core(2).status().role, "follower");
});

test("randomized election timeout stays in [electionTicks, 2*electionTicks)", () => {
  const waits = new Set<number>();
  for (let seed = 1; seed <= 20; seed++) {
    const core = new RaftCore(
      { id: 1, electionTicks: 10, heartbeatTicks: 1, random: seededRandom(seed), preVote: false },
      { hardState: { term: 1, vote: 0, commit: 1 }, entries: logWithTerms([1, 2, 3], [1]) },
    );
    let ticks = 0;
    while (core.status().role === "follower") {
      core.tick();
      ticks++;
    }
    assert.ok(ticks >= 10 && ticks < 20, `campaigned after ${ticks} ticks`);
    waits.add(ticks);
  }
  assert.ok(waits.size > 3, "timeouts vary with the random source");
});

test("re-election after leader loss", () => {
  const net = Net.cluster([1, 2, 3]);
  net.elect(1);
  net.crash(1);
  for (let i = 0; i < 100 && ![2, 3].some((id) => net.core(id).status().role === "leader"); i++) {
    net.tickAll();
    net.stabilize();
  }
  const leader = [2, 3].find((id) => net.core(id).status().role === "leader");
  assert.ok(leader, "a survivor leads");
  assert.equal(net.core(leader).status().term, 3);
  const other = leader === 2 ? 3 : 2;
  assert.equal(net.core(other).status().leader, leader);
});

test("reject stale term: an old leader's append changes nothing and tells it the new term", () => {
  const net = Net.cluster([1, 2, 3]);
  net.elect(1);
  const before = net.core(2).status();
  net.deliver([
    {
      type: "append",
      from: 3,
      to: 2,
      term: 1,
      prevIndex: 2,
      prevTerm: 2,
      entries: [{ index: 3, term: 1, kind: "command", data: new Uint8Array([1]) }],
      commit: 3,
    },
    { type: "vote", from: 3, to: 2, term: 1, lastIndex: 9, lastTerm: 9 },
  ]);
  const after = net.core(2).status();
  assert.deepEqual(after, before);
  const replies = net.collect();
  assert.deepEqual(
    replies.map((m) => [m.type, m.to, m.term]),
    [["appendResp", 3, 2]],
  );
});

test("vote only for up-to-date candidates", () => {
  const net = new Net();
  const voters = [1, 2, 3];
  for (const [id, terms] of [
    [1, [1, 1, 2]],
    [2, [1, 1]],
    [3, [1, 1, 2]],
  ] as const) {
    net.add(
      id,
      { hardState: { term: 2, vote: 0, commit: 1 }, entries: logWithTerms(voters, [...terms]) },
      { preVote: false },
    );
  }
  net.campaign(2);
  const answers = net.deliveredOf("voteResp").filter((m) => m.to === 2);
  assert.equal(answers.length, 2);
  assert.ok(answers.every((m) => m.reject));
  assert.notEqual(net.core(2).status().role, "leader");
  net.elect(1);
  assert.equal(net.core(2).status().leader, 1);
});

test("one vote per term", () => {
  const net = Net.cluster([1, 2, 3], { preVote: false });
  const ask = (from: number): Message => ({
    type: "vote",
    from,
    to: 3,
    term: 2,
    lastIndex: 1,
    lastTerm: 1,
  });
  net.deliver([ask(1), ask(2), ask(1)]);
  const answers = ofType(net.collect(), "voteResp");
  assert.deepEqual(
    answers.map((m) => [m.to, m.reject]),
    [
      [1, false],
      [2, true],
      [1, false],
    ],
  );
  assert.equal(net.storage.get(3)!.hardState.vote, 1);
});

test("hardState with the vote is persisted in the same Ready as the vote requests", () => {
  for (const preVote of [false, true]) {
    const net = Net.cluster([1, 2, 3], { preVote });
    net.elect(1);
    const readies = net.readies.get(1)!;
    const withVotes = readies.filter((rd) => rd.messages.some((m) => m.type === "vote"));
    assert.equal(withVotes.length, 1);
    const rd = withVotes[0]!;
    assert.deepEqual(rd.hardState, { term: 2, vote: 1, commit: 1 });
    // Pre-votes never change the term or the vote on disk.
    for (const earlier of readies.slice(0, readies.indexOf(rd))) {
      assert.ok(earlier.messages.every((m) => m.type === "preVote"));
      assert.equal(earlier.hardState, undefined);
    }
    const granted = net.readies.get(2)!.find((r) => r.messages.some((m) => m.type === "voteResp"));
    assert.deepEqual(granted?.hardState, { term: 2, vote: 1, commit: 1 });
  }
});

test("PreVote stops a disruptive rejoining follower (term and leader unchanged)", () => {
  const net = Net.cluster([1, 2, 3]);
  net.elect(1);
  net.isolated.add(3);
  for (let i = 0; i < 50; i++) {
    net.tickAll();
    net.stabilize();
  }
  assert.equal(net.core(3).status().term, 2, "pre-votes do not bump the term");
  net.isolated.delete(3);
  // Node 3 rejoins with an up-to-date log and campaigns again; the others heard from the leader
  // within the election timeout, so they ignore it.
  let preVotes = 0;
  for (let i = 0; i < 40 && preVotes === 0; i++) {
    net.tick(3);
    const out = net.collect();
    preVotes = ofType(out, "preVote").filter((m) => m.from === 3).length;
    net.deliver(out);
  }
  assert.equal(preVotes, 2);
  net.stabilize();
  net.tickAll();
  net.stabilize();
  for (const id of [1, 2, 3]) {
    assert.equal(net.core(id).status().term, 2);
    assert.equal(net.core(id).status().leader, 1);
  }
});

test("CheckQuorum: a leader that hears from no quorum within an election timeout steps down", () => {
  const net = Net.cluster([1, 2, 3]);
  net.elect(1);
  net.isolated.add(1);
  for (let i = 0; i < 9; i++) {
    net.tick(1);
    net.stabilize();
  }
  assert.equal(net.core(1).status().role, "leader");
  for (let i = 0; i < 11; i++) net.tick(1);
  const s = net.core(1).status();
  assert.equal(s.role, "follower");
  assert.equal(s.leader, 0);
  assert.equal(s.term, 2);
});
