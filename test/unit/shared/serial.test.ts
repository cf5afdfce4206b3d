import assert from "node:assert/strict";
import { test } from "node:test";
import { SerialQueue } from "../../../lib/shared/serial.ts";

test("tasks run one at a time in queue order, a failure stays with its caller", async () => {
  const queue = new SerialQueue();
  const events: string[] = [];
  let releaseFirst!: () => void;
  const first = queue.run(async () => {
    events.push("first starts");
    await new Promise<void>((resolve) => {
      releaseFirst = resolve;
    });
    events.push("first ends");
    return 1;
  });
  const second = queue.run(async () => {
    events.push("second runs");
    throw new Error("second failed");
  });
  const third = queue.run(async () => {
    events.push("third runs");
    return 3;
  });
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(events, ["first starts"], "nothing overtakes a running task");
  releaseFirst();
  assert.equal(await first, 1);
  await assert.rejects(second, /second failed/);
  assert.equal(await third, 3, "a failed task does not stop the queue");
  assert.deepEqual(events, ["first starts", "first ends", "second runs", "third runs"]);
});
