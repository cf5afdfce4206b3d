import assert from "node:assert/strict";
import { test } from "node:test";
import {
  ApiError,
  IdentityMismatchError,
  NodeStoppedError,
  outcomeUnknown,
  retryUncertain,
  UnreachableError,
} from "../../../lib/node/client.ts";
import { FakeClock } from "../../shared/fake-clock.ts";

test("a call may have taken effect when its answer did not come, or the leader could not be asked", () => {
  assert.equal(
    outcomeUnknown(new UnreachableError("cannot reach 10.0.0.1:4400: socket hang up")),
    true,
  );
  assert.equal(outcomeUnknown(new ApiError(502, "cannot reach the leader")), true);
  assert.equal(outcomeUnknown(new ApiError(503, "no leader yet")), true);
  // An answer is an answer; a pin that does not match sent nothing; a stopped local node is told.
  for (const status of [400, 401, 403, 404, 409, 429, 500]) {
    assert.equal(outcomeUnknown(new ApiError(status, "refused")), false, `HTTP ${status}`);
  }
  assert.equal(outcomeUnknown(new IdentityMismatchError("another server")), false);
  assert.equal(outcomeUnknown(new NodeStoppedError("/var/lib/mill", "x:4400", "refused")), false);
  assert.equal(outcomeUnknown(new Error("a bug")), false);
});

/** An attempt that fails with `errors` in turn, then answers "done"; counts its tries. */
function attempts(...errors: Error[]) {
  const calls = { count: 0 };
  const attempt = async () => {
    const error = errors[calls.count++];
    if (error) throw error;
    return "done";
  };
  return { calls, attempt };
}

const plan = { delaysMs: [250, 1000, 2000], budgetMs: 10_000 };

test("a lost answer is asked for again after each wait, and the call's answer is returned", async () => {
  const clock = new FakeClock();
  const lost = new UnreachableError("cannot reach 10.0.0.1:4400: socket hang up");
  const { calls, attempt } = attempts(lost, new ApiError(503, "no leader yet"));
  const waits: number[] = [];
  const result = retryUncertain(attempt, (_error, wait) => waits.push(wait), plan, clock);
  await clock.advance(249);
  assert.equal(calls.count, 1, "the second try waits its 250 ms");
  await clock.advance(1);
  assert.equal(calls.count, 2);
  await clock.advance(1000);
  assert.equal(await result, "done");
  assert.equal(calls.count, 3);
  assert.deepEqual(waits, [250, 1000]);
});

test("an answer that refuses is not asked again, and the last try's error is the call's", async () => {
  const clock = new FakeClock();
  const refused = attempts(new ApiError(409, "a voter"));
  await assert.rejects(
    retryUncertain(refused.attempt, () => {}, plan, clock),
    /a voter/,
  );
  assert.equal(refused.calls.count, 1);

  const lost = new UnreachableError("cannot reach 10.0.0.1:4400: connection refused");
  const always = attempts(lost, lost, lost, lost, lost);
  const result = retryUncertain(always.attempt, () => {}, plan, clock);
  const rejected = assert.rejects(result, /connection refused/);
  await clock.advance(3250);
  await rejected;
  assert.equal(always.calls.count, 4, "the first try and one per wait");
});

test("no try starts past the budget: a try that took its whole timeout is not repeated", async () => {
  const clock = new FakeClock();
  const calls = { count: 0 };
  const slow = async () => {
    calls.count++;
    clock.time += 9_900; // It waited for an answer until its timeout.
    throw new UnreachableError("cannot reach 10.0.0.1:4400: timed out");
  };
  await assert.rejects(
    retryUncertain(slow, () => {}, plan, clock),
    /timed out/,
  );
  assert.equal(calls.count, 1);
});
