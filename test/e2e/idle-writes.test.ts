/**
 * Writes through followers after the cluster has been idle, with the real executable on loopback
 * (`--mesh none`): every follower forwards a token rotation to the leader after more than the
 * leader's keep-alive timeout (5 s) of silence, round after round, and not one attempt may fail.
 * Heartbeats are slowed to a minute so that nothing else keeps a follower's connection to the
 * leader warm: the forwarded write is the first request on it after the idle time.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { LocalCluster } from "./harness.ts";

/** Longer than the server's keep-alive timeout (5 s) plus the second Node takes to close it. */
const IDLE_MS = 7_000;
const ROUNDS = 3;

describe("writes through followers after idle time", () => {
  const cluster = new LocalCluster("dist", {
    MILL_HEARTBEAT_INTERVAL_MS: "60000",
    MILL_HEARTBEAT_TIMEOUT_MS: "600000",
  });
  let token = "";
  before(async () => {
    token = await cluster.init();
    for (const node of [2, 3]) {
      const joined = await cluster.join(node, token);
      assert.equal(joined.status, 0, joined.stderr);
    }
  });
  after(() => cluster.cleanup());

  test(`every follower's first write after ${IDLE_MS} ms idle succeeds, ${ROUNDS} rounds`, async () => {
    const failures: string[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      // The idle time is the scenario under test, not a wait for something to settle.
      await sleep(IDLE_MS);
      for (const follower of [2, 3]) {
        const rotated = await cluster.run([
          "token",
          "rotate",
          "--json",
          "--address",
          `${cluster.address(follower)}:4400`,
          "--token",
          token,
        ]);
        if (rotated.status !== 0) {
          failures.push(`round ${round}, node-${follower}: ${rotated.stderr.trim()}`);
          continue;
        }
        token = (JSON.parse(rotated.stdout) as { token: string }).token;
      }
    }
    assert.deepEqual(failures, []);
  });
});
