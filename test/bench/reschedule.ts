/**
 * Benchmark: time from a NodeDown commit to the replacement process running, on a real
 * three-node loopback cluster (`dist/mill`, `--mesh none`, the harness's short health timings).
 * Each round kills -9 a follower that runs a replica, waits for its replacement, then brings the
 * node back with `mill agent` (its stale process is stopped) before the next round.
 *
 * Measured from timestamps the system writes, not from polling: the replacement's createdAt is
 * the NodeDown's time (the leader's clock when it proposed it; the AllocationsLost follow-up
 * carries it), and the process runs once its supervisor wrote its pid file (mtime), right after
 * the spawn. Same host, same clock. Also shown: kill -9 to replacement running (includes the
 * heartbeat timeout). Usage: npm run build && node --import tsx test/bench/reschedule.ts
 * Env: BENCH_RUNS (5). Owns: the cluster it starts; every process is ended at the end.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { nodeProcessHost } from "../../lib/workloads/process-host.ts";
import { eventually, FAST_HEALTH, LocalCluster } from "../e2e/harness.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const NODES = [1, 2, 3];

interface Row {
  id: number;
  node: string;
  status: string;
  createdAt: number;
}

interface PidRecord {
  pid: number;
  startTime: string;
}

const cluster = new LocalCluster();
const nodeNumber = (name: string) => Number(name.replace("node-", ""));

async function ps(node: number): Promise<Row[]> {
  const result = await cluster.run(["ps", "--json"], {
    env: { MILL_DATA_DIR: cluster.dataDir(node) },
  });
  if (result.status !== 0) throw new Error(`ps failed: ${result.stderr}`);
  return (JSON.parse(result.stdout) as { allocations: Row[] }).allocations;
}

function pidFile(node: number, id: number): string {
  return join(cluster.dataDir(node), "allocs", String(id), "pid");
}

function workloadProcesses(): PidRecord[] {
  const records: PidRecord[] = [];
  for (const node of NODES) {
    const dir = join(cluster.dataDir(node), "allocs");
    if (!existsSync(dir)) continue;
    for (const id of readdirSync(dir)) {
      const file = join(dir, id, "pid");
      if (existsSync(file)) records.push(JSON.parse(readFileSync(file, "utf8")) as PidRecord);
    }
  }
  return records;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
};

async function main(): Promise<void> {
  const token = await cluster.init();
  for (const node of [2, 3]) {
    const joined = await cluster.join(node, token);
    if (joined.status !== 0) throw new Error(`join failed: ${joined.stderr}`);
  }
  const started = await cluster.run(["run", "bench", "--replicas", "3", "--", "sleep", "1000"], {
    env: { MILL_DATA_DIR: cluster.dataDir(1) },
  });
  if (started.status !== 0) throw new Error(`run failed: ${started.stderr}`);

  const results: { victim: string; fromNodeDown: number; fromKill: number }[] = [];
  for (let round = 0; round < RUNS; round++) {
    const leader = (await cluster.status(1)).leader;
    const before = await ps(1);
    const running = before.filter((row) => row.status === "running");
    const victim = running.map((row) => nodeNumber(row.node)).find((n) => `node-${n}` !== leader);
    if (victim === undefined) throw new Error("no follower runs a replica");
    const observer = NODES.find((n) => n !== victim)!;
    const newest = Math.max(...before.map((row) => row.id));
    const killedAt = Date.now();
    cluster.kill(victim);
    const replacement = await eventually(
      "the replacement running",
      async () =>
        (await ps(observer)).find(
          (row) =>
            row.id > newest &&
            row.status === "running" &&
            existsSync(pidFile(nodeNumber(row.node), row.id)),
        ),
      30_000,
    );
    const runningAt = statSync(pidFile(nodeNumber(replacement.node), replacement.id)).mtimeMs;
    results.push({
      victim: `node-${victim}`,
      fromNodeDown: runningAt - replacement.createdAt,
      fromKill: runningAt - killedAt,
    });
    cluster.agent(victim);
    await eventually("the node back with its stale process stopped", async () => {
      const status = await cluster.statusIfAnswering(observer);
      const ready = status?.nodes.every((node) => node.status === "ready");
      const live = workloadProcesses().filter(
        (record) => nodeProcessHost.startTime(record.pid) === record.startTime,
      );
      return ready && live.length === 3 ? true : undefined;
    });
  }

  console.log(
    `reschedule on loopback, 3 nodes, heartbeat ${FAST_HEALTH.MILL_HEARTBEAT_INTERVAL_MS} ms, timeout ${FAST_HEALTH.MILL_HEARTBEAT_TIMEOUT_MS} ms, watchdog tick ${FAST_HEALTH.MILL_WATCHDOG_TICK_MS} ms`,
  );
  console.log(
    "| round | killed | NodeDown commit → replacement running | kill -9 → replacement running |",
  );
  console.log("|---|---|---|---|");
  results.forEach((result, i) => {
    console.log(
      `| ${i + 1} | ${result.victim} | ${Math.round(result.fromNodeDown)} ms | ${Math.round(result.fromKill)} ms |`,
    );
  });
  console.log(
    `| median of ${results.length} | | ${Math.round(median(results.map((r) => r.fromNodeDown)))} ms | ${Math.round(median(results.map((r) => r.fromKill)))} ms |`,
  );
}

try {
  await main();
} finally {
  await cluster.run(["stop", "bench"], { env: { MILL_DATA_DIR: cluster.dataDir(1) } });
  for (const record of workloadProcesses()) {
    if (nodeProcessHost.startTime(record.pid) === record.startTime) {
      process.kill(-record.pid, "SIGKILL");
    }
  }
  await cluster.cleanup();
}
