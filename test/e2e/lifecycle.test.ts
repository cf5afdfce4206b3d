/**
 * A node's life with the real executable, three nodes on loopback, `--mesh none`: `mill drain`
 * moves a workload's replicas off a node with one always running (checked by polling `mill ps`
 * while it drains), places nothing new there, refuses to move what has no room elsewhere (exit 1,
 * naming it, the original kept), and `mill undrain` makes the node schedulable again. `mill
 * remove` is refused while the node holds replicas or when the voters left would lack a quorum,
 * `--force` overrides, a removed node stops itself and its data dir is refused from then on, a
 * dead node's name can join again (with a new id), removing the leader moves leadership first,
 * `mill leave` drains, removes, stops and clears a node, and the last node leaves only with --force.
 * `mill recover` brings back a cluster that lost 3 of 5 nodes; a rolling restart of three nodes
 * marks none down and restarts no workload.
 * Every process started is killed at the end.
 */
import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { EXIT_REMOVED } from "../../lib/cli/errors.ts";
import { MILL_VERSION } from "../../lib/shared/version.ts";
import {
  eventually,
  exited,
  killWorkloads,
  LocalCluster,
  liveWorkloads,
  rollingRestart,
} from "./harness.ts";

const LIVE = ["pending", "running", "failed"];

describe("node lifecycle on loopback", () => {
  const cluster = new LocalCluster();

  const mill = (args: string[], node = 1) => cluster.on(node, args);
  const ps = (node = 1) => cluster.ps(node);

  before(async () => {
    await cluster.form(3);
  });

  after(async () => {
    killWorkloads(cluster, [1, 2, 3]);
    await cluster.cleanup();
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

  test("mill nodes shows each node's Mill version", async () => {
    const listed = await mill(["nodes", "--json"], 3);
    assert.equal(listed.status, 0, listed.stderr);
    const nodes = (JSON.parse(listed.stdout) as { nodes: { version: string | null }[] }).nodes;
    assert.deepEqual(
      nodes.map((node) => node.version),
      [MILL_VERSION, MILL_VERSION, MILL_VERSION],
    );
    const table = await mill(["nodes"], 2);
    assert.match(table.stdout, /^NAME +ID +STATUS +ROLE +VERSION /);
    assert.match(
      table.stdout,
      new RegExp(`node-3 +3 +ready +voter +${MILL_VERSION.replaceAll(".", "\\.")} `),
    );
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

describe("removing nodes on loopback", () => {
  const cluster = new LocalCluster();
  const mill = (args: string[], node = 1) => cluster.on(node, args);
  let token = "";

  /** The node number whose name is `name`. */
  const numberOf = (name: string) => Number(name.replace("node-", ""));

  async function leaderNumber(via: number): Promise<number> {
    const status = await eventually("a leader", async () => {
      const answer = await cluster.statusIfAnswering(via);
      return answer?.leader ? answer : undefined;
    });
    return numberOf(status.leader);
  }

  /** The member numbers, as the first node that still answers (removed ones refuse) sees them. */
  async function members(): Promise<number[]> {
    for (const node of [1, 2, 3, 4]) {
      const status = await cluster.status(node).catch(() => undefined);
      if (status) return status.nodes.map((entry) => numberOf(entry.name));
    }
    throw new Error("no node answers");
  }

  before(async () => {
    token = await cluster.form(4);
  });

  after(async () => {
    killWorkloads(cluster, [1, 2, 3, 4]);
    await cluster.cleanup();
  });

  test("remove is refused while the node holds replicas; --force removes it and it stops itself", async () => {
    const started = await mill(["run", "web", "--replicas", "2", "--", "sleep", "1000"]);
    assert.equal(started.status, 0, started.stderr);
    const leader = await leaderNumber(1);
    const holder = (await cluster.ps(1)).find(
      (row) => row.status === "running" && numberOf(row.node) !== leader,
    );
    assert.ok(holder, "a follower runs a replica");
    const victim = numberOf(holder.node);
    const via = [1, 2, 3, 4].find((node) => node !== victim)!;
    const pid = cluster.pid(victim)!;
    assert.equal(liveWorkloads(cluster, victim).length, 1);

    const refused = await mill(["remove", holder.node], via);
    assert.equal(refused.status, 1);
    assert.match(
      refused.stderr,
      new RegExp(
        `${holder.node} still holds 1 live allocation\\(s\\): run mill drain ${holder.node} first`,
      ),
    );
    assert.equal((await cluster.status(via)).nodes.length, 4, "nothing changed");

    const forced = await mill(["remove", holder.node, "--force"], via);
    assert.equal(forced.status, 0, forced.stderr);
    assert.match(
      forced.stdout + forced.stderr,
      /removed from the cluster; 1 replica\(s\) rescheduled/,
    );
    await exited(`node-${victim}'s agent`, pid);
    const status = await cluster.status(via);
    assert.deepEqual(
      status.nodes.map((node) => node.name).sort(),
      [1, 2, 3, 4].filter((node) => node !== victim).map((node) => `node-${node}`),
    );
    const running = await eventually("web back to 2 running replicas", async () => {
      const rows = (await cluster.ps(via)).filter((row) => row.status === "running");
      return rows.length === 2 ? rows : undefined;
    });
    assert.ok(running.every((row) => row.node !== holder.node));
    assert.deepEqual(liveWorkloads(cluster, victim), [], "the removed node stopped its workload");

    const there = await mill(["status"], victim);
    assert.equal(there.status, 1);
    assert.match(
      there.stderr,
      /was removed from the cluster: to join again, clear .* and run mill join/,
    );
    const agent = await cluster.run(["agent", "--data-dir", cluster.dataDir(victim)]);
    assert.equal(agent.status, EXIT_REMOVED, "the exit status mill.service does not restart on");
    assert.match(agent.stderr, /was removed from the cluster: to join again/);
  });

  test("a live node is refused when the voters left would lack a quorum; the down one can go and come back under its name", async () => {
    const nodes = await members();
    const leader = await leaderNumber(nodes[0]!);
    const [down, live] = nodes.filter((node) => node !== leader);
    assert.equal((await mill(["stop", "web"], leader)).status, 0, "no replica holds any node");
    const downId = (await cluster.status(leader)).nodes.find((n) => n.name === `node-${down}`)!.id;
    cluster.kill(down!);
    await eventually(`node-${down} marked down`, async () => {
      const status = await cluster.status(leader);
      return status.nodes.find((node) => node.name === `node-${down}`)?.status === "down"
        ? true
        : undefined;
    });
    const refused = await mill(["remove", `node-${live}`], leader);
    assert.equal(refused.status, 1);
    assert.match(
      refused.stderr,
      new RegExp(
        `would leave 2 voters of which 1 are up, short of a quorum of 2: bring node-${down} back first`,
      ),
    );

    const removed = await mill(["remove", `node-${down}`, "--force"], leader);
    assert.equal(removed.status, 0, removed.stderr);
    rmSync(cluster.dataDir(down!), { recursive: true, force: true });
    const rejoined = await cluster.join(down!, token, leader);
    assert.equal(rejoined.status, 0, rejoined.stderr);
    const status = await cluster.status(leader);
    const again = status.nodes.find((node) => node.name === `node-${down}`);
    assert.ok(again && again.id > downId, `a new id (${again?.id}) beyond the old one (${downId})`);
    assert.equal(status.nodes.length, 3);
  });

  test("removing the leader moves leadership first; the old leader stops itself", async () => {
    const nodes = await members();
    const leader = await leaderNumber(nodes[0]!);
    const via = nodes.find((node) => node !== leader)!;
    const pid = cluster.pid(leader)!;
    const removed = await mill(["remove", `node-${leader}`], via);
    assert.equal(removed.status, 0, removed.stderr);
    await exited(`node-${leader}'s agent`, pid);
    const next = await leaderNumber(via);
    assert.notEqual(next, leader);
    const status = await cluster.status(via);
    assert.deepEqual(
      status.nodes.map((node) => node.status),
      ["ready", "ready"],
    );
    assert.ok(status.nodes.every((node) => node.name !== `node-${leader}`));
  });

  test("leave drains the node, removes it, stops it and clears its data dir", async () => {
    const nodes = await members();
    assert.equal(nodes.length, 2);
    const [stays, leaves] = nodes as [number, number];
    const started = await mill(["run", "web", "--replicas", "2", "--", "sleep", "1000"], stays);
    assert.equal(started.status, 0, started.stderr);
    const pid = cluster.pid(leaves)!;
    const left = await cluster.run(["leave", "--data-dir", cluster.dataDir(leaves)]);
    assert.equal(left.status, 0, left.stderr);
    assert.match(
      left.stdout + left.stderr,
      /left the cluster and cleared .*: this host can join again/,
    );
    await exited(`node-${leaves}'s agent`, pid);
    assert.equal(existsSync(cluster.dataDir(leaves)), false, "the data dir is gone");
    const status = await cluster.status(stays);
    assert.deepEqual(
      status.nodes.map((node) => node.name),
      [`node-${stays}`],
    );
    const rows = await cluster.ps(stays);
    assert.equal(rows.filter((row) => row.status === "running").length, 2);
    assert.ok(rows.every((row) => row.node === `node-${stays}` || row.status !== "running"));
  });

  test("the last node refuses to leave; --force ends the cluster, its workloads and its data dir", async () => {
    const [last] = (await members()) as [number];
    const refused = await cluster.run(["leave", "--data-dir", cluster.dataDir(last)]);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /is the cluster's last node: leaving would end the cluster/);
    assert.equal(liveWorkloads(cluster, last).length, 2, "nothing stopped");
    const workloads = liveWorkloads(cluster, last);
    const pid = cluster.pid(last)!;
    const forced = await cluster.run(["leave", "--data-dir", cluster.dataDir(last), "--force"]);
    assert.equal(forced.status, 0, forced.stderr);
    await exited(`node-${last}'s agent`, pid);
    for (const workload of workloads) {
      assert.throws(() => process.kill(workload, 0), "its workload processes are gone");
    }
    assert.equal(existsSync(cluster.dataDir(last)), false);
  });
});

describe("recovering from a lost majority on loopback", () => {
  const cluster = new LocalCluster();
  const mill = (args: string[], node = 1) => cluster.on(node, args);
  let token = "";

  async function stopAgent(node: number): Promise<void> {
    await exited(`node-${node}`, cluster.kill(node, "SIGTERM"));
  }

  before(async () => {
    token = await cluster.form(5);
  });

  after(async () => {
    killWorkloads(cluster, [1, 2, 3, 4, 5]);
    await cluster.cleanup();
  });

  test("recover is refused while the majority is up, and while the agent runs", async () => {
    const running = await cluster.run(["recover", "--data-dir", cluster.dataDir(1)]);
    assert.equal(running.status, 1);
    assert.match(running.stderr, /this node's agent is running \(pid \d+\)/);
    await stopAgent(1);
    const refused = await cluster.run(["recover", "--data-dir", cluster.dataDir(1)]);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /the cluster has not lost its majority: 5 of its 5 voters are up/);
    cluster.agent(1);
    await eventually("node-1 back", async () => {
      const status = await cluster.statusIfAnswering(1);
      return status?.nodes.every((node) => node.status === "ready") ? true : undefined;
    });
  });

  test("3 of 5 killed: a survivor recovers alone, keeps the workloads, fresh nodes join", async () => {
    const started = await mill(["run", "web", "--replicas", "2", "--", "sleep", "1000"]);
    assert.equal(started.status, 0, started.stderr);
    const before = await cluster.status(1);
    const node1 = before.nodes.find((node) => node.name === "node-1")!;
    for (const node of [3, 4, 5]) cluster.kill(node);
    await stopAgent(1);
    const survivorPid = cluster.pid(2)!;

    const recovered = await cluster.run(["recover", "--data-dir", cluster.dataDir(1)]);
    assert.equal(recovered.status, 0, recovered.stderr);
    const printed = recovered.stdout + recovered.stderr;
    assert.match(printed, /kept every entry up to index \d+/);
    assert.match(printed, /the cluster had 5 node\(s\) and is now node-1 alone, last index \d+/);
    assert.match(printed, /node-2, node-3, node-4, node-5 marked removed/);
    assert.match(printed, /next: start it \(mill agent --data-dir/);

    cluster.agent(1);
    const alone = await eventually("node-1 leading alone", async () => {
      const status = await cluster.statusIfAnswering(1);
      return status?.leader === "node-1" ? status : undefined;
    });
    assert.deepEqual(
      alone.nodes.map((node) => [node.name, node.id, node.status]),
      [["node-1", node1.id, "ready"]],
    );
    const web = await eventually("web's 2 replicas running on node-1", async () => {
      const rows = (await cluster.ps(1)).filter(
        (row) => row.name === "web" && row.status === "running",
      );
      return rows.length === 2 ? rows : undefined;
    });
    assert.ok(web.every((row) => row.node === "node-1"));

    // The other survivor learns that it was removed and stops itself.
    await exited("node-2, which stops itself,", survivorPid);
    const there = await mill(["status"], 2);
    assert.equal(there.status, 1);
    assert.match(there.stderr, /was removed from the cluster: to join again/);

    for (const node of [3, 4]) {
      rmSync(cluster.dataDir(node), { recursive: true, force: true });
      const joined = await cluster.join(node, token);
      assert.equal(joined.status, 0, joined.stderr);
    }
    const grown = await cluster.status(4);
    assert.deepEqual(
      grown.nodes.map((node) => [node.name, node.status]),
      [
        ["node-1", "ready"],
        ["node-3", "ready"],
        ["node-4", "ready"],
      ],
    );
    assert.ok(
      grown.nodes.slice(1).every((node) => node.id > 5),
      "new ids for the fresh nodes",
    );
    assert.equal(
      (await cluster.ps(3)).filter((row) => row.name === "web" && row.status === "running").length,
      2,
    );
  });
});

describe("a rolling restart on loopback", () => {
  // Restarts take well under the timeout; the watchdog must not mistake one for a failure.
  const cluster = new LocalCluster("dist", {
    MILL_HEARTBEAT_INTERVAL_MS: "500",
    MILL_HEARTBEAT_TIMEOUT_MS: "6000",
    MILL_WATCHDOG_TICK_MS: "100",
  });

  before(async () => {
    await cluster.form(3);
  });

  after(async () => {
    killWorkloads(cluster, [1, 2, 3]);
    await cluster.cleanup();
  });

  test("three nodes restarted one at a time: no NodeDown, no workload restarted elsewhere", async () => {
    const started = await cluster.on(1, ["run", "web", "--replicas", "3", "--", "sleep", "1000"]);
    assert.equal(started.status, 0, started.stderr);
    const looks = await rollingRestart(cluster, [1, 2, 3]);
    assert.ok(looks > 3, `status looked at ${looks} times`);
  });
});
