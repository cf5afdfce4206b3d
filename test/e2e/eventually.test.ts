/**
 * The polling helper of the end-to-end suites: it waits for conditions, but an assertion made on
 * any look fails at once, so a state that is wrong for a while and then right cannot pass.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { answeredStatus, eventually } from "./harness.ts";

describe("eventually", () => {
  test("returns the first value once the condition holds", async () => {
    let looks = 0;
    const value = await eventually("the third look", async () =>
      ++looks === 3 ? "ok" : undefined,
    );
    assert.equal(value, "ok");
    assert.equal(looks, 3);
  });

  test("an assertion that fails on an early look fails, though a later look would pass", async () => {
    let looks = 0;
    await assert.rejects(
      eventually("a state that is wrong, then right", async () => {
        looks++;
        assert.ok(looks > 1, "wrong on the first look");
        return true;
      }),
      { name: "AssertionError", message: "wrong on the first look" },
    );
    assert.equal(looks, 1);
  });

  test("names what it waited for when the deadline passes", async () => {
    await assert.rejects(
      eventually("a condition that never holds", async () => undefined, 250),
      /timed out after 250 ms waiting for a condition that never holds/,
    );
  });
});

describe("answeredStatus", () => {
  test("parses an answer, and reads unreachable or 503 as not answering yet", () => {
    assert.deepEqual(answeredStatus("node 1", 0, '{"leader":"node-1"}', ""), { leader: "node-1" });
    const unreachable = "error: cannot reach 127.0.0.1:4400: connect ECONNREFUSED 127.0.0.1:4400";
    assert.equal(answeredStatus("node 1", 1, "", unreachable), undefined);
    const noLeader = "error: leadership is changing: retry in a moment (HTTP 503)";
    assert.equal(answeredStatus("node 1", 1, "", noLeader), undefined);
  });

  test("throws at once for any other failure", () => {
    assert.throws(
      () => answeredStatus("node 1", 1, "", "error: wrong token (HTTP 401)"),
      /status on node 1 failed \(exit 1\): error: wrong token \(HTTP 401\)/,
    );
    assert.throws(() => answeredStatus("node 1", null, "", ""), /exit null/);
  });
});
