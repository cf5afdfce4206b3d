/**
 * Workloads with the real executable, three nodes on loopback, `--mesh none`: bad input commits
 * nothing; `mill run` with 3 replicas puts one on each node; a node killed with -9 leaves its
 * process behind and its replica is rescheduled; `mill agent` brings it back and it stops the
 * stale process; a new spec replaces the replicas; `mill stop` leaves no process anywhere. Every process started is killed at the end.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { nodeProcessHost } from "../../lib/workloads/process-host.ts";
import { eventually, LocalCluster } from "./harness.ts";

interface PsRow {
  id: number;
  name: string;
  node: string;
  status: string;
}

interface Process {
  pid: number;
  startTime: string;
}

const NODES = [1, 2, 3];

describe("workloads on loopback", () => {
  const cluster = new LocalCluster();
  /** Every workload process seen, so cleanup can end them even after a failure. */
  const seen = new Map<number, Process>();

  const mill = (args: string[], node = 1) =>
    cluster.run(args, { env: { MILL_DATA_DIR: cluster.dataDir(node) } });

  async function ps(node = 1): Promise<PsRow[]> {
    const result = await mill(["ps", "--json"], node);
    if (result.status !== 0) throw new Error(`ps failed: ${result.stderr}`);
    return (JSON.parse(result.stdout) as { allocations: PsRow[] }).allocations;
  }

  /** The live workload processes a node's pid files record, by allocation id. */
  function processes(node: number): Map<number, Process> {
    const dir = join(cluster.dataDir(node), "allocs");
    const found = new Map<number, Process>();
    if (!existsSync(dir)) return found;
    for (const id of readdirSync(dir)) {
      const file = join(dir, id, "pid");
      if (!existsSync(file)) continue;
      const record = JSON.parse(readFileSync(file, "utf8")) as Process;
      seen.set(record.pid, record);
      if (alive(record)) found.set(Number(id), record);
    }
    return found;
  }

  before(async () => {
    const token = await cluster.init();
    for (const node of [2, 3]) {
      const joined = await cluster.join(node, token);
      if (joined.status !== 0) throw new Error(`join ${node} failed: ${joined.stderr}`);
    }
  });

  after(async () => {
    for (const node of NODES) processes(node);
    for (const record of seen.values()) {
      if (alive(record)) process.kill(-record.pid, "SIGKILL");
    }
    await cluster.cleanup();
  });

  test("bad input is refused with a clear error and commits nothing", async () => {
    const cases: [string[], RegExp][] = [
      [["run", "Web_1", "--", "sleep", "1000"], /not a DNS label/],
      [["run", "web", "--cpu=-1", "--", "sleep", "1000"], /cpu "-1" is not a core count/],
      [["run", "web", "--memory", "lots", "--", "sleep", "1000"], /not a memory size/],
      [["run", "web", "--gpu", "1", "--", "sleep", "1000"], /unknown flag "--gpu"/],
      [["run", "web"], /no command/],
      [["run", "web", "--replicas", "1000", "--", "sleep", "1000"], /no room: .*room for \d+/],
    ];
    for (const [args, message] of cases) {
      const result = await mill(args);
      assert.ok(result.status === 1 || result.status === 2, `${args.join(" ")}: ${result.status}`);
      assert.match(result.stderr, message, args.join(" "));
    }
    assert.deepEqual(await ps(), []);
  });

  test("three replicas run one on each node", async () => {
    const result = await mill(["run", "web", "--replicas", "3", "--", "sleep", "1000"]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stderr + result.stdout, /web: 3\/3 running/);
    const status = await cluster.status(2);
    assert.deepEqual(
      status.nodes.map((node) => [node.name, node.allocs, node.cpu.used]),
      [
        ["node-1", 1, 0.25],
        ["node-2", 1, 0.25],
        ["node-3", 1, 0.25],
      ],
    );
    for (const node of NODES) assert.equal(processes(node).size, 1, `node-${node}`);
    const again = await mill(["run", "web", "--replicas", "3", "--", "sleep", "1000"]);
    assert.match(again.stderr + again.stdout, /unchanged/);
    assert.equal((await ps()).length, 3);
  });

  test("a killed node's replica runs elsewhere; back again, it stops its stale process", async () => {
    const leader = (await cluster.status(1)).leader;
    const victim = NODES.find((node) => `node-${node}` !== leader && node !== 1) ?? 3;
    const survivor = NODES.find((node) => node !== victim)!;
    const [[staleId, stale]] = [...processes(victim)];
    cluster.kill(victim);

    const moved = await eventually("the replica rescheduled, its lost row gone", async () => {
      const rows = await ps(survivor);
      const running = rows.filter((row) => row.status === "running");
      assert.ok(
        running.length <= 3,
        `never more replicas running than the spec asks: ${running.length}`,
      );
      // Its row shows "lost" until the replacement runs, then ages out.
      const stale = rows.find((row) => row.id === staleId);
      return !stale && running.length === 3 ? running : undefined;
    });
    assert.ok(moved.every((row) => row.node !== `node-${victim}`));
    assert.ok(alive(stale!), "the dead agent's process keeps running");

    cluster.agent(victim);
    await eventually("the stale process stopped", async () => (alive(stale!) ? undefined : true));
    const back = await eventually("the node ready again", async () => {
      const status = await cluster.status(survivor);
      return status.nodes.every((node) => node.status === "ready") ? status : undefined;
    });
    assert.equal(
      back.nodes.reduce((sum, node) => sum + node.allocs, 0),
      3,
    );
    const running = (await ps(victim)).filter((row) => row.status === "running");
    assert.equal(running.length, 3);
    const live = NODES.reduce((sum, node) => sum + processes(node).size, 0);
    assert.equal(live, 3);
  });

  test("a new spec replaces the replicas, and mill run returns once all run it", async () => {
    const old = (await ps()).filter((row) => row.status === "running");
    const result = await mill(["run", "web", "--replicas", "3", "--", "sleep", "2000"], 3);
    assert.equal(result.status, 0, result.stderr);
    const rows = await ps();
    const running = rows.filter((row) => row.status === "running");
    assert.equal(running.length, 3);
    assert.ok(running.every((row) => !old.some((before) => before.id === row.id)));
    // The last replaced process may still be stopping on its node when the new one runs, but
    // replicas are replaced one at a time: never more than one old process beside the three.
    await eventually("only the new processes left", async () => {
      const live = NODES.reduce((sum, node) => sum + processes(node).size, 0);
      assert.ok(live <= 4, `${live} workload processes alive`);
      return live === 3 ? true : undefined;
    });
  });

  test("mill stop leaves no process anywhere", async () => {
    const before = NODES.flatMap((node) => [...processes(node).values()]);
    assert.equal(before.length, 3);
    const result = await mill(["stop", "web"], 2);
    assert.equal(result.status, 0, result.stderr);
    await eventually("every process gone", async () =>
      before.some(alive) || NODES.some((node) => processes(node).size > 0) ? undefined : true,
    );
    assert.deepEqual(await ps(3), []);
    const again = await mill(["stop", "web"]);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /no workload named web/);
  });
});

/** The recorded process still runs (same pid and kernel start time: not a reused pid). */
function alive(record: Process): boolean {
  return nodeProcessHost.startTime(record.pid) === record.startTime;
}
