/**
 * Writes through followers after idle time, on three nodes in network namespaces with the default
 * `--mesh wireguard` (the case the loopback test in test/e2e/idle-writes.test.ts cannot show:
 * here heartbeats travel inside the mesh, so nothing but the forwarded write uses a follower's
 * connection to the leader's public port). Every follower forwards a token rotation after more
 * than the leader's keep-alive timeout (5 s) of silence, round after round; no attempt may fail.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { FaultCluster } from "../faults/cluster.ts";
import { notRootReason } from "../harness.ts";

const NODES = ["node-1", "node-2", "node-3"];
/** Longer than the server's keep-alive timeout (5 s) plus the second Node takes to close it. */
const IDLE_MS = 7_000;
const ROUNDS = 3;

describe("writes through followers after idle time, with the mesh", { skip: notRootReason }, () => {
  let cluster: FaultCluster;
  before(async () => {
    cluster = await FaultCluster.create(NODES.length, {});
    await cluster.form(NODES);
  });
  after(async () => {
    await cluster?.cleanup(false);
  });

  test(`every follower's first write after ${IDLE_MS} ms idle succeeds, ${ROUNDS} rounds`, async () => {
    let token = cluster.token("node-1");
    const failures: string[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      // The idle time is the scenario under test, not a wait for something to settle.
      await sleep(IDLE_MS);
      for (const follower of ["node-2", "node-3"]) {
        const address = `${cluster.host(follower).underlay}:4400`;
        const args = ["token", "rotate", "--json", "--address", address, "--token", token];
        const rotated = await cluster.mill(follower, args);
        if (rotated.code !== 0) {
          failures.push(`round ${round}, ${follower}: ${rotated.stderr.trim()}`);
          continue;
        }
        token = (JSON.parse(rotated.stdout) as { token: string }).token;
      }
    }
    assert.deepEqual(failures, []);
  });
});
