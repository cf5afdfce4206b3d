/**
 * Workloads with the real executable on three nodes in network namespaces and the default
 * `--mesh wireguard`: three replicas run one on each node, in that node's namespace; a node whose
 * agent is killed with -9 leaves its process behind and its replica runs elsewhere; `mill agent`
 * brings it back and it stops the stale process while three replicas keep running; `mill stop`
 * leaves no workload process on the machine. Processes are found through /proc, not only through
 * mill's own pid files, by a marker unique to this run in the workload's command line.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { nodeProcessHost } from "../../../lib/workloads/process-host.ts";
import { eventually } from "../../e2e/harness.ts";
import { FaultCluster } from "../faults/cluster.ts";
import { notRootReason } from "../harness.ts";

const NODES = ["node-1", "node-2", "node-3"];

interface PsRow {
  id: number;
  name: string;
  node: string;
  status: string;
}

/** A workload process as the kernel shows it. */
interface Seen {
  pid: number;
  pgrp: number;
  startTime: string;
  /** The node whose namespace it runs in; "" for none of this cluster's. */
  node: string;
}

describe("workloads on a WireGuard mesh cluster in network namespaces", {
  skip: notRootReason,
}, () => {
  let cluster: FaultCluster;
  let marker = "";
  /** Every workload process group seen, so the end can check (and cleanup end) all of them. */
  const groups = new Map<number, string>();

  /** `mill COMMAND --data-dir DIR ARGS...` on a node (before ARGS: a `--` in them ends the flags). */
  async function mill(node: string, [command, ...args]: string[]) {
    const result = await cluster.mill(node, [
      command!,
      "--data-dir",
      cluster.dataDir(node),
      ...args,
    ]);
    if (result.code !== 0) throw new Error(`${command} on ${node}: ${result.stderr}`);
    return result;
  }

  async function ps(node: string): Promise<PsRow[]> {
    const result = await mill(node, ["ps", "--json"]);
    return (JSON.parse(result.stdout) as { allocations: PsRow[] }).allocations;
  }

  /** The workload's shells (marker in argv) and anything left in a group one of them led. */
  function scan(): { shells: Seen[]; leftovers: Seen[] } {
    const namespaces = new Map(
      NODES.map((node) => [`net:[${statSync(`/run/netns/${cluster.host(node).name}`).ino}]`, node]),
    );
    const shells: Seen[] = [];
    const leftovers: Seen[] = [];
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      const pid = Number(entry);
      try {
        const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        const startTime = nodeProcessHost.startTime(pid);
        if (startTime === undefined) continue;
        const pgrp = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
        const node = namespaces.get(readlinkSync(`/proc/${pid}/ns/net`)) ?? "";
        const seen = { pid, pgrp, startTime, node };
        if (argv.includes(marker)) {
          shells.push(seen);
          groups.set(pid, startTime);
        } else if (groups.has(pgrp)) {
          leftovers.push(seen);
        }
      } catch {
        // It exited while being read.
      }
    }
    return { shells, leftovers };
  }

  const alive = (seen: Seen) => nodeProcessHost.startTime(seen.pid) === seen.startTime;
  const nodesOf = (items: readonly { node: string }[]) => items.map((item) => item.node).sort();
  const running = (rows: PsRow[]) => rows.filter((row) => row.status === "running");

  before(async () => {
    cluster = await FaultCluster.create(NODES.length, {});
    marker = `mill-wl-${cluster.net.runId}`;
    await cluster.form(NODES);
  });

  after(async () => {
    await cluster?.cleanup(false);
    // Workloads live in the namespaces, so cleanup ended them; this catches one that escaped.
    for (const [pgrp, startTime] of groups) {
      if (nodeProcessHost.startTime(pgrp) === startTime) process.kill(-pgrp, "SIGKILL");
    }
  });

  test("three replicas run one on each node, each in its node's namespace", async () => {
    const result = await mill("node-1", [
      "run",
      "spin",
      "--replicas",
      "3",
      "--",
      "sh",
      "-c",
      "while :; do sleep 1; done",
      marker,
    ]);
    assert.match(result.stderr + result.stdout, /spin: 3\/3 running/);
    const view = await cluster.status("node-2");
    assert.deepEqual(
      view.nodes.map((node) => [node.name, node.allocs]),
      [
        ["node-1", 1],
        ["node-2", 1],
        ["node-3", 1],
      ],
    );
    assert.deepEqual(nodesOf(running(await ps("node-3"))), NODES);
    assert.deepEqual(nodesOf(scan().shells), NODES);
  });

  test("kill -9 of a node's agent: its replica runs elsewhere, its orphan keeps running", async (t) => {
    const leader = (await cluster.status("node-1")).leader;
    const victim = NODES.find((node) => node !== "node-1" && node !== leader)!;
    const survivor = NODES.find((node) => node !== victim)!;
    const staleId = (await ps(survivor)).find((row) => row.node === victim)?.id;
    const orphan = scan().shells.find((shell) => shell.node === victim);
    assert.ok(staleId !== undefined && orphan, `${victim}'s allocation and process found`);
    const killedAt = Date.now();
    cluster.kill(victim);

    const moved = await eventually("the replica running elsewhere, its lost row gone", async () => {
      const rows = await ps(survivor);
      assert.ok(running(rows).length <= 3, "never more replicas running than the spec asks");
      // The row shows "lost" until the replacement runs, then ages out.
      const stale = rows.some((row) => row.id === staleId);
      return !stale && running(rows).length === 3 ? running(rows) : undefined;
    });
    t.diagnostic(`kill -9 to replacement running, seen by mill ps: ${Date.now() - killedAt} ms`);
    assert.ok(moved.every((row) => row.node !== victim));
    assert.ok(alive(orphan), "the killed agent's process keeps running");
    // The replacement runs where ps says: the shells are the orphan plus one per running row.
    const expected = nodesOf([...moved, orphan]);
    await eventually("the replacement process in its namespace", async () =>
      nodesOf(scan().shells).join() === expected.join() ? true : undefined,
    );
  });

  test("mill agent brings the node back: its stale process stops, three replicas keep running", async (t) => {
    const back = (await cluster.status("node-1")).nodes.find(
      (node) => node.status === "down",
    )?.name;
    const orphan = scan().shells.find((shell) => shell.node === back);
    assert.ok(back && orphan, "one node is down and its orphan still runs");
    const startedAt = Date.now();
    cluster.restart(back);

    await eventually("the stale process stopped", async () => (alive(orphan) ? undefined : true));
    t.diagnostic(`mill agent started to stale process stopped: ${Date.now() - startedAt} ms`);
    const view = await eventually("every node ready again", async () => {
      const seen = await cluster.statusIfAnswering(back);
      return seen?.nodes.every((node) => node.status === "ready") ? seen : undefined;
    });
    assert.equal(
      view.nodes.reduce((sum, node) => sum + node.allocs, 0),
      3,
    );
    const rows = running(await ps(back));
    assert.equal(rows.length, 3);
    assert.deepEqual(
      nodesOf(scan().shells),
      nodesOf(rows),
      "the live processes are where mill ps says, and no more",
    );
  });

  test("mill stop leaves no workload process anywhere", async () => {
    await mill("node-2", ["stop", "spin"]);
    await eventually("every workload process gone", async () => {
      const { shells, leftovers } = scan();
      return shells.length === 0 && leftovers.length === 0 ? true : undefined;
    });
    assert.ok(groups.size >= 4, "the scans saw the original three shells and the replacement");
    assert.deepEqual(await ps("node-3"), []);
    const view = await cluster.status("node-1");
    assert.deepEqual(
      view.nodes.map((node) => node.allocs),
      [0, 0, 0],
    );
  });
});
