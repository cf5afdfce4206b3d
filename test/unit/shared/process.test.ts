import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { processExists } from "../../../lib/shared/process.ts";

test("processExists: this process exists, a child that was reaped does not", () => {
  assert.equal(processExists(process.pid), true);
  const child = spawnSync("true");
  assert.equal(child.status, 0);
  assert.equal(processExists(child.pid), false);
});
