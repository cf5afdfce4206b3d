/**
 * Majority arithmetic and the in-flight window, checked against brute force where it helps.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { Inflights } from "../../../lib/raft/progress.ts";
import { majority, quorumIndex, voteResult } from "../../../lib/raft/quorum.ts";

test("quorumIndex is the highest value a majority has reached", () => {
  fc.assert(
    fc.property(fc.array(fc.nat(1000), { minLength: 1, maxLength: 9 }), (matches) => {
      const voters = matches.map((_, i) => i + 1);
      const index = quorumIndex(voters, (id) => matches[id - 1]!);
      const reached = (v: number) => matches.filter((m) => m >= v).length;
      assert.ok(reached(index) >= majority(voters.length));
      assert.ok(reached(index + 1) < majority(voters.length));
    }),
  );
  assert.equal(
    quorumIndex([], () => 5),
    0,
  );
});

test("voteResult: a majority of grants wins, a majority of rejections loses, else pending", () => {
  const voters = [1, 2, 3, 4];
  const votes = new Map<number, boolean>([
    [1, true],
    [2, true],
    [9, true],
  ]);
  assert.equal(voteResult(voters, votes), "pending", "non-voters do not count");
  votes.set(3, true);
  assert.equal(voteResult(voters, votes), "won");
  assert.equal(
    voteResult(
      voters,
      new Map([
        [1, false],
        [2, false],
        [3, false],
      ]),
    ),
    "lost",
  );
});

test("the in-flight window fills, frees up to an index, and wraps around", () => {
  const window = new Inflights(3);
  for (const last of [10, 20, 30]) window.add(last);
  assert.ok(window.full());
  window.freeTo(20);
  assert.equal(window.count, 1);
  window.add(40);
  window.add(50);
  assert.ok(window.full());
  window.freeFirst();
  window.freeTo(45);
  assert.equal(window.count, 1);
  window.freeTo(50);
  assert.equal(window.count, 0);
});
