/**
 * Joins are bounded, attacked through the real executable on loopback (`--mesh none`): a holder
 * of the token registers 100 nodes that never start. At most 16 wait at once, none is ready or
 * gets a replica, their claimed resources are bounded, and each expires; then a real node joins.
 * A registration's resources are only a claim: a node's record shows what the node measured on
 * its own host, from its heartbeats, and the scheduler places by that.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { availableParallelism, totalmem } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createNodeIdentity } from "../../lib/identity/node-key.ts";
import { createSecret, hashSecret } from "../../lib/identity/token.ts";
import { generateKeyPair, publicKeyFromPrivate } from "../../lib/mesh/keys.ts";
import { loadNode } from "../../lib/node/config.ts";
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
  after(async () => {
    killWorkloads(cluster, [1, 2]);
    await cluster.cleanup();
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

describe("a node's resources come from its own heartbeats", () => {
  const cluster = new LocalCluster();
  let token = "";
  const host = { cores: availableParallelism(), memory: totalmem() };

  before(async () => {
    token = await cluster.form(2);
  });
  after(async () => {
    killWorkloads(cluster, [1, 2]);
    await cluster.cleanup();
  });

  const shown = async (name: string) => {
    const node = (await cluster.status(1)).nodes.find((entry) => entry.name === name);
    return node && { cores: node.cpu.total, memory: node.memory.total };
  };

  test("a joined node's record shows its host's cores and memory", async () => {
    assert.deepEqual(await shown("node-2"), host);
  });

  test("a registration claiming 4096 cores is replaced by what the node measures, and nothing is placed beyond it", async () => {
    // What a modified joiner would send: node-2's own registration (its keys and secret, so the
    // node keeps working) claiming the most cores and memory the bounds allow.
    const { config, secrets } = await loadNode(cluster.dataDir(2));
    const claim = signJoin(
      {
        requestId: "rejoin-node-2-claiming-4096",
        name: config.name,
        advertise: config.advertise,
        apiPort: config.apiPort,
        raftPort: config.raftPort,
        wgPort: config.wgPort,
        wgPublicKey: publicKeyFromPrivate(secrets.wgPrivateKey),
        resources: { cores: 4096, memoryBytes: 64 * 1024 ** 4 },
        memberSecretHash: hashSecret(secrets.memberSecret),
        mesh: "none",
      },
      { certPem: secrets.nodeCertPem, keyPem: secrets.nodeKeyPem },
    );
    const posted = await rawRequest({
      host: cluster.address(1),
      method: "POST",
      path: "/v1/join",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(claim),
      from: cluster.address(250),
    });
    assert.equal(posted.status, 200, posted.text);

    // The leader commits the node's measurement over the claim, and says so.
    const line = await eventually("the leader to commit node-2's measured resources", async () =>
      readFileSync(join(cluster.dataDir(1), "mill.log"), "utf8")
        .split("\n")
        .find((entry) => /node node-2 measured .* its record said 4096 cores, 64T/.test(entry)),
    );
    assert.match(line, new RegExp(`measured ${host.cores} cores`));
    assert.deepEqual(await shown("node-2"), host);

    const beyond = String(host.cores + 1);
    const run = await cluster.on(1, ["run", "big", "--cpu", beyond, "--", "sleep", "1000"]);
    assert.notEqual(run.status, 0, "no node has that many cores");
    assert.match(run.stderr, /no room: big needs 1 replicas of/);
    assert.deepEqual(await cluster.ps(1), []);
    const fits = await cluster.on(1, [
      "run",
      "fits",
      "--cpu",
      String(host.cores),
      "--",
      "sleep",
      "1000",
    ]);
    assert.equal(fits.status, 0, fits.stderr);
    assert.equal((await shown("node-2"))?.cores, host.cores, "the record stays the measured one");
  });
});
