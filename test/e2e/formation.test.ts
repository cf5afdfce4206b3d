/**
 * The seed's workflow with the real executable, three processes on loopback, `--mesh none`:
 * init, joins (directly and through a follower), rejoin, a wrong token, NodeDown and back,
 * leader loss, and a full restart from disk.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eventually, LocalCluster, type StatusJson } from "./harness.ts";

const byName = (status: StatusJson) => new Map(status.nodes.map((node) => [node.name, node]));

describe("cluster formation on loopback", () => {
  const cluster = new LocalCluster();
  let token = "";
  before(async () => {
    token = await cluster.init();
  });
  after(() => cluster.cleanup());

  test("init prints a token and the first node reports itself ready", async () => {
    assert.match(token, /^mill_t_[a-z2-7]{32}\.[a-z2-7]{32}$/);
    const status = await cluster.status(1);
    assert.equal(status.leader, "node-1");
    assert.deepEqual(
      status.nodes.map((node) => [node.name, node.status, node.role]),
      [["node-1", "ready", "voter"]],
    );
  });

  test("two joins, the second through a follower, give three ready voters on every node", async () => {
    const second = await cluster.join(2, token, 1);
    assert.equal(second.status, 0, second.stderr);
    const third = await cluster.join(3, token, 2);
    assert.equal(third.status, 0, third.stderr);
    for (const node of [1, 2, 3]) {
      const status = await cluster.status(node);
      assert.deepEqual(
        status.nodes.map((entry) => [entry.name, entry.id, entry.status, entry.role]),
        [
          ["node-1", 1, "ready", "voter"],
          ["node-2", 2, "ready", "voter"],
          ["node-3", 3, "ready", "voter"],
        ],
        `as seen from node ${node}`,
      );
    }
    const text = await cluster.run(["status"], { env: { MILL_DATA_DIR: cluster.dataDir(2) } });
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /^CLUSTER: 3 nodes, all healthy\nNODES\n {2}NAME {4}STATUS {2}CPU/);
  });

  test("joining again is refused while the node runs, and idempotent once it is stopped", async () => {
    const pid = cluster.pid(2)!;
    const running = await cluster.join(2, token, 3);
    assert.equal(running.status, 1);
    assert.match(
      running.stderr,
      new RegExp(`^error: a Mill node already runs in ${cluster.dataDir(2)} \\(pid ${pid}\\)`),
    );
    assert.equal(cluster.pid(2), pid, "the running node's pid file is untouched");
    cluster.kill(2, "SIGTERM");
    await eventually("node 2 to stop", async () =>
      cluster.pid(2) === undefined ? true : undefined,
    );
    const again = await cluster.join(2, token, 3);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stderr + again.stdout, /node 2/);
    const status = await cluster.status(1);
    assert.deepEqual(
      status.nodes.map((node) => node.id),
      [1, 2, 3],
    );
  });

  test("a wrong token is refused with a clear error and changes nothing", async () => {
    const [secret, fingerprint] = token.slice("mill_t_".length).split(".");
    const wrong = `mill_t_${secret!.replace(/^./, secret![0] === "a" ? "b" : "a")}.${fingerprint}`;
    const result = await cluster.join(4, wrong, 1);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /token/);
    assert.doesNotMatch(result.stderr, new RegExp(secret!));
    const status = await cluster.status(1);
    assert.equal(status.nodes.length, 3);
  });

  test("a killed node is marked down, and comes back ready after mill agent", async () => {
    // On every look, not only the last: the survivors are never marked down, not even briefly.
    const survivorsReady = (status: StatusJson) => {
      assert.equal(byName(status).get("node-1")?.status, "ready", "node-1 is never marked down");
      assert.equal(byName(status).get("node-2")?.status, "ready", "node-2 is never marked down");
    };
    cluster.kill(3);
    await eventually("node-3 down", async () => {
      const status = await cluster.statusIfAnswering(1);
      if (!status) return undefined;
      survivorsReady(status);
      return byName(status).get("node-3")?.status === "down" ? status : undefined;
    });
    const text = await cluster.run(["status"], { env: { MILL_DATA_DIR: cluster.dataDir(1) } });
    assert.match(text.stdout, /^CLUSTER: 2 nodes healthy, 1 down \(leader: node-\d\)/);
    cluster.agent(3);
    await eventually("node-3 ready again", async () => {
      const status = await cluster.statusIfAnswering(1);
      if (!status) return undefined;
      survivorsReady(status);
      return byName(status).get("node-3")?.status === "ready" ? status : undefined;
    });
  });

  test("when the leader is killed the survivors elect a new one and keep answering", async () => {
    const before = await cluster.status(1);
    const leader = Number(before.leader.replace("node-", ""));
    cluster.kill(leader);
    const survivor = leader === 1 ? 2 : 1;
    const after = await eventually("a new leader", async () => {
      const status = await cluster.statusIfAnswering(survivor);
      return status && status.leader !== before.leader && status.leader !== "" ? status : undefined;
    });
    assert.ok(after.term > before.term);
    cluster.agent(leader);
    await eventually("the old leader back as a ready follower", async () => {
      const status = await cluster.statusIfAnswering(leader);
      return status?.nodes.every((node) => node.status === "ready") ? status : undefined;
    });
  });

  test("joining a cluster that has lost quorum fails with that reason and registers nothing", async () => {
    const before = await cluster.status(1);
    const survivor = before.nodes.find((node) => node.name === before.leader)!.id;
    const others = [1, 2, 3].filter((node) => node !== survivor);
    for (const node of others) cluster.kill(node);
    // Lost quorum as the survivor sees it: its leader stepped down, so reads fail.
    await eventually("the survivor to notice", async () =>
      (await cluster.statusIfAnswering(survivor)) === undefined ? true : undefined,
    );
    const result = await cluster.join(4, token, survivor);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /quorum/);
    for (const node of others) cluster.agent(node);
    await eventually("the cluster back", async () => {
      const status = await cluster.statusIfAnswering(survivor);
      if (!status) return undefined;
      assert.deepEqual(
        status.nodes.map((node) => node.name),
        ["node-1", "node-2", "node-3"],
        "the refused join registered nothing",
      );
      return status.nodes.every((node) => node.status === "ready") ? status : undefined;
    });
  });

  test("all three nodes killed and restarted from disk form the same cluster", async () => {
    const before = await cluster.status(1);
    for (const node of [1, 2, 3]) cluster.kill(node);
    for (const node of [1, 2, 3]) cluster.agent(node);
    await eventually("the cluster back", async () => {
      const status = await cluster.statusIfAnswering(2);
      if (!status) return undefined;
      assert.deepEqual(
        status.nodes.map((node) => [node.id, node.name, node.role]),
        before.nodes.map((node) => [node.id, node.name, node.role]),
        "every answer after the restart holds the same members",
      );
      return status.nodes.every((node) => node.status === "ready") && status.leader !== ""
        ? status
        : undefined;
    });
  });
});
