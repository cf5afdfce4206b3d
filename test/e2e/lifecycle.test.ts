/**
 * A node's life with the real executable, three nodes on loopback, `--mesh none`: `mill drain`
 * moves a workload's replicas off a node with one always running (checked by polling `mill ps`
 * while it drains), places nothing new there, refuses to move what has no room elsewhere (exit 1,
 * naming it, the original kept), and `mill undrain` makes the node schedulable again.
 * Every process started is killed at the end.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eventually, killWorkloads, LocalCluster } from "./harness.ts";

const LIVE = ["pending", "running", "failed"];

describe("node lifecycle on loopback", () => {
  const cluster = new LocalCluster();

  const mill = (args: string[], node = 1) => cluster.on(node, args);
  const ps = (node = 1) => cluster.ps(node);

  before(async () => {
    await cluster.form(3);
  });

  after(() => {
    killWorkloads(cluster, [1, 2, 3]);
    cluster.cleanup();
  });

  test("drain moves three replicas off a node, one always running, and places nothing new there", async () => {
    const started = await mill(["run", "web", "--replicas", "3", "--", "sleep", "1000"]);
    assert.equal(started.status, 0, started.stderr);
    const before = await ps();
    assert.equal(
      before.filter((row) => row.node === "node-3" && row.status === "running").length,
      1,
    );

    let polling = true;
    let looks = 0;
    const watcher = (async () => {
      while (polling) {
        const rows = await ps(2);
        const running = rows.filter((row) => row.name === "web" && row.status === "running");
        assert.ok(
          running.length >= 3,
          `only ${running.length} replicas running: ${JSON.stringify(rows)}`,
        );
        looks++;
      }
    })();
    const drained = await mill(["drain", "node-3"]);
    polling = false;
    await watcher;
    assert.equal(drained.status, 0, drained.stderr);
    const printed = drained.stdout + drained.stderr;
    assert.match(printed, /draining node-3: 1 allocation \(web\) to move/);
    assert.match(printed, /web allocation \d+ moved off node-3 \(0 left\)/);
    assert.match(printed, /node-3 drained: it holds no allocation \(draining\)/);
    assert.ok(looks >= 2, `mill ps was polled ${looks} times during the drain`);

    const after = await ps(3);
    assert.equal(
      after.filter((row) => row.node === "node-3" && LIVE.includes(row.status)).length,
      0,
    );
    assert.equal(after.filter((row) => row.status === "running").length, 3);
    const status = await cluster.status(1);
    assert.deepEqual(
      status.nodes.map((node) => [node.name, node.status, node.allocs]),
      [
        ["node-1", "ready", status.nodes[0]!.allocs],
        ["node-2", "ready", status.nodes[1]!.allocs],
        ["node-3", "draining", 0],
      ],
    );
    const scaled = await mill(["run", "web", "--replicas", "4", "--", "sleep", "1000"]);
    assert.equal(scaled.status, 0, scaled.stderr);
    assert.ok((await ps()).every((row) => row.node !== "node-3" || !LIVE.includes(row.status)));
    const again = await mill(["drain", "node-3"], 2);
    assert.equal(again.status, 0, again.stderr);
  });

  test("undrain makes the node schedulable again; nothing moves back by itself", async () => {
    const undrained = await mill(["undrain", "node-3"], 2);
    assert.equal(undrained.status, 0, undrained.stderr);
    assert.match(undrained.stdout + undrained.stderr, /node-3 takes new work again/);
    assert.equal((await cluster.status(3)).nodes[2]!.status, "ready");
    assert.ok((await ps()).every((row) => row.node !== "node-3" || !LIVE.includes(row.status)));
    const scaled = await mill(["run", "web", "--replicas", "5", "--", "sleep", "1000"]);
    assert.equal(scaled.status, 0, scaled.stderr);
    assert.ok((await ps()).some((row) => row.node === "node-3" && row.status === "running"));
  });

  test("a replica with no room elsewhere is named, kept running, and drain exits 1", async () => {
    const stopped = await mill(["stop", "web"]);
    assert.equal(stopped.status, 0, stopped.stderr);
    const cores = (await cluster.status(1)).nodes[0]!.cpu.total;
    // One replica per node fits; a second one on any node does not.
    const cpu = String(Math.floor(cores * 700) / 1000);
    const wide = await mill([
      "run",
      "wide",
      "--replicas",
      "3",
      "--cpu",
      cpu,
      "--",
      "sleep",
      "1000",
    ]);
    assert.equal(wide.status, 0, wide.stderr);
    const onTwo = (await ps()).find((row) => row.node === "node-2" && row.status === "running");
    assert.ok(onTwo);
    const refused = await mill(["drain", "node-2"]);
    assert.equal(refused.status, 1, refused.stdout);
    assert.match(
      refused.stderr,
      new RegExp(`node-2: could not move wide allocation ${onTwo.id}: no room for another replica`),
    );
    const rows = await ps();
    assert.equal(rows.find((row) => row.id === onTwo.id)?.status, "running");
    assert.equal(rows.filter((row) => row.status === "running").length, 3);
    const undrained = await mill(["undrain", "node-2"]);
    assert.equal(undrained.status, 0, undrained.stderr);
  });

  test("bad input: one line and exit 2 or 1, nothing committed", async () => {
    const cases: [string[], number, RegExp][] = [
      [["drain", "Node_2"], 2, /not a DNS label/],
      [["drain"], 2, /NAME|name/],
      [["drain", "node-9"], 1, /no node named node-9/],
      [["undrain", "node-9"], 1, /no node named node-9/],
      [["drain", "node-2", "--now"], 2, /unknown flag "--now"/],
    ];
    for (const [args, code, message] of cases) {
      const result = await mill(args);
      assert.equal(result.status, code, `${args.join(" ")}: ${result.stderr}`);
      assert.match(result.stderr, message, args.join(" "));
    }
    await eventually("every node ready", async () => {
      const status = await cluster.status(1);
      return status.nodes.every((node) => node.status === "ready") ? true : undefined;
    });
  });
});
