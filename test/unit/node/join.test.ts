import assert from "node:assert/strict";
import { test } from "node:test";
import { answerProtocolProblem, keepsNode } from "../../../lib/node/join.ts";
import {
  PROTOCOL_VERSION,
  type ProtocolVersion,
  UNVERSIONED_JOIN,
} from "../../../lib/shared/protocol.ts";

const ours = `${PROTOCOL_VERSION.major}.${PROTOCOL_VERSION.minor}`;

test("a join answer of the same major is taken whatever its minor, and one without a version as 1.0's", () => {
  const minor = { major: PROTOCOL_VERSION.major, minor: PROTOCOL_VERSION.minor + 4 };
  assert.equal(answerProtocolProblem({ protocol: minor }), undefined);
  assert.equal(answerProtocolProblem({ protocol: PROTOCOL_VERSION }), undefined);
  assert.equal(answerProtocolProblem({}), answerProtocolProblem({ protocol: UNVERSIONED_JOIN }));
  assert.deepEqual(UNVERSIONED_JOIN, { major: 1, minor: 0 });
});

test("a join answer of another major is refused with one line naming both versions", () => {
  const other = { major: PROTOCOL_VERSION.major + 1, minor: 2 };
  assert.equal(
    answerProtocolProblem({ protocol: other }),
    `the cluster speaks protocol ${other.major}.2, this node ${ours}: join with a mill of protocol ${other.major}.x, the cluster's major version`,
  );
});

test("an unreadable version in the answer is refused, naming the field", () => {
  const broken = { major: "1", minor: 0 } as unknown as ProtocolVersion;
  assert.match(
    answerProtocolProblem({ protocol: broken }) ?? "",
    /^the cluster answered the join with an unreadable version: protocol\.major "1" is not a protocol version number/,
  );
});

test("a failed join undoes everything until it asked to be a voter, and after that only when the cluster says the join is gone", () => {
  // Before the request to become a voter the node cannot be one: undo, whatever the withdrawal.
  for (const withdrawal of ["gone", "member", "unknown", undefined] as const) {
    assert.equal(keepsNode("not asked", withdrawal), false, `not asked, withdrawal ${withdrawal}`);
  }
  // Asked, answer lost: only a withdrawal the cluster took (or a record already gone) proves it
  // is no voter; a 409 says it is a member, anything else leaves it unknown.
  assert.equal(keepsNode("asked", "gone"), false);
  assert.equal(keepsNode("asked", "member"), true);
  assert.equal(keepsNode("asked", "unknown"), true);
  assert.equal(keepsNode("asked", undefined), true, "a rejoin has nothing to withdraw");
  // Committed: a voter, never undone (nothing is withdrawn then).
  assert.equal(keepsNode("committed", undefined), true);
});
