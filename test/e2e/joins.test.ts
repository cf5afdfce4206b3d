/**
 * Joins are bounded, attacked through the real executable on loopback (`--mesh none`): a holder
 * of the token registers 100 nodes that never start. At most 16 wait at once, none is ready or
 * gets a replica, their claimed resources are bounded, and each expires; then a real node joins.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createNodeIdentity } from "../../lib/identity/node-key.ts";
import { createSecret, hashSecret } from "../../lib/identity/token.ts";
import { generateKeyPair } from "../../lib/mesh/keys.ts";
import { signJoin } from "../unit/cluster/fixtures.ts";
import { eventually, FAST_HEALTH, killWorkloads, LocalCluster } from "./harness.ts";
import { rawRequest } from "./raw-client.ts";

// Long enough for the 100 posts and the status below on a loaded machine (about 4 s at load 14):
// the "16 wait" checks hold only before the first registration expires, which the test asserts.
const EXPIRY_MS = 15_000;

describe("joins are bounded", () => {
  const cluster = new LocalCluster("dist", {
    ...FAST_HEALTH,
    MILL_JOIN_EXPIRY_MS: String(EXPIRY_MS),
  });
  let token = "";

  before(async () => {
    token = await cluster.init();
  });
  after(() => {
    killWorkloads(cluster, [1, 2]);
    cluster.cleanup();
  });

  /** A registration as a joiner sends it, for a node that will never start. */
  function fakeJoin(i: number, cores = 64) {
    const body = {
      requestId: `fake-join-${String(i).padStart(4, "0")}`,
      name: `fake-${i}`,
      advertise: cluster.address(100 + i),
      apiPort: 4400,
      raftPort: 4401,
      wgPort: 51820,
      wgPublicKey: generateKeyPair().publicKey,
      resources: { cores, memoryBytes: 2 ** 40 },
      memberSecretHash: hashSecret(createSecret()),
      mesh: "none",
    };
    // Each fake holds its own node key and signs with it, as a real joiner does.
    return JSON.stringify(signJoin(body, createNodeIdentity()));
  }
  const post = (body: string) =>
    rawRequest({
      host: cluster.address(1),
      method: "POST",
      path: "/v1/join",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body,
      from: cluster.address(250),
    });

  test("100 joins that never confirm: 16 wait, none is ready or placed, all expire", async () => {
    const huge = await post(fakeJoin(0, 1_000_000));
    assert.equal(huge.status, 400, "a million cores is not a host's claim");
    assert.match(huge.text, /resources\.cores/);

    const statuses: number[] = [];
    const firstPostAt = performance.now();
    for (let i = 1; i <= 100; i++) statuses.push((await post(fakeJoin(i))).status);
    assert.deepEqual(
      [statuses.filter((s) => s === 200).length, statuses.filter((s) => s === 429).length],
      [16, 84],
    );

    const waiting = await cluster.status(1);
    assert.ok(
      performance.now() - firstPostAt < EXPIRY_MS,
      "the posts and the status outlasted the expiry window: the counts below would race it",
    );
    const joining = waiting.nodes.filter((node) => node.status === "joining");
    assert.equal(joining.length, 16);
    assert.deepEqual(
      waiting.nodes.filter((node) => node.status === "ready").map((node) => node.name),
      ["node-1"],
    );

    const run = await cluster.on(1, [
      "run",
      "web",
      "--replicas",
      "3",
      "--cpu",
      "0.1",
      "--",
      "sleep",
      "1000",
    ]);
    assert.equal(run.status, 0, run.stderr);
    const placed = await cluster.ps(1);
    assert.equal(placed.length, 3);
    assert.deepEqual(new Set(placed.map((row) => row.node)), new Set(["node-1"]));

    await eventually(
      "every fake join to expire",
      async () => {
        const now = await cluster.status(1);
        return now.nodes.some((node) => node.name.startsWith("fake-")) ? undefined : now;
      },
      EXPIRY_MS + 15_000,
    );
    const log = readFileSync(join(cluster.dataDir(1), "mill.log"), "utf8");
    assert.equal(
      log.split("\n").filter((line) => /fake-\d+ never became a voter/.test(line)).length,
      16,
    );

    const real = await cluster.join(2, token);
    assert.equal(real.status, 0, `a real node joins once the slots are free: ${real.stderr}`);
    const after = await cluster.status(1);
    assert.deepEqual(
      after.nodes.map((node) => [node.name, node.status]),
      [
        ["node-1", "ready"],
        ["node-2", "ready"],
      ],
    );
  });
});
