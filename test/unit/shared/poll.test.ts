import assert from "node:assert/strict";
import { test } from "node:test";
import { pollFor, pollUntil } from "../../../lib/shared/poll.ts";

test("polling resolves once the check holds, checking again until then", async () => {
  let calls = 0;
  assert.equal(await pollFor(() => ++calls === 3, 10_000, 1), true);
  assert.equal(calls, 3);
  calls = 0;
  await pollUntil(
    async () => ++calls === 2,
    10_000,
    () => new Error("unused"),
    1,
  );
  assert.equal(calls, 2);
});

test("a check that never holds ends the wait after the timeout: false, or the caller's error", async () => {
  let calls = 0;
  const never = () => {
    calls++;
    return false;
  };
  assert.equal(await pollFor(never, 20, 1), false);
  assert.ok(calls >= 2, "it kept checking until the deadline");
  await assert.rejects(
    pollUntil(
      () => false,
      20,
      () => new Error("gave up on the node"),
      1,
    ),
    /gave up on the node/,
  );
});

test("a throwing check ends the wait with its own error", async () => {
  await assert.rejects(
    pollUntil(
      () => {
        throw new Error("the node exited");
      },
      10_000,
      () => new Error("timed out"),
    ),
    /the node exited/,
  );
});
