import assert from "node:assert/strict";
import { test } from "node:test";
import { runUntilSignal } from "../../../lib/cli/agent.ts";
import { OperationError } from "../../../lib/cli/errors.ts";
import type { RunningAgent } from "../../../lib/node/agent.ts";

test("mill agent stops the node and fails (exit 1) once its Raft stopped on an error", async () => {
  let stopped = 0;
  const agent = {
    failed: Promise.resolve(new Error("raft storage: EIO")),
    stop: async () => {
      stopped++;
    },
  } as unknown as RunningAgent;
  await assert.rejects(runUntilSignal(agent), (error: unknown) => {
    assert.ok(error instanceof OperationError);
    assert.equal(error.message, "raft stopped: raft storage: EIO");
    return true;
  });
  assert.equal(stopped, 1, "the APIs and heartbeats stop before the process exits");
});
