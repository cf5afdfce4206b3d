/**
 * Benchmark: the leader's scheduler as pure functions over a simulated cluster of 100 nodes
 * (16 cores, 64 GiB each). Scenarios, each the median of BENCH_RUNS runs:
 * - one workload of 1,000 replicas: planRun (placement of every replica) alone, and with apply;
 * - 100 workloads of 10 replicas run one after another (placement over a growing state);
 * - a loaded node goes down: planNodeDown (replacements for its allocations) plus apply.
 * Usage: node --import tsx test/bench/scheduler.ts   Env: BENCH_RUNS (7).
 * Owns: nothing but its in-memory state. Must not touch: I/O beyond printing.
 */

import { performance } from "node:perf_hooks";
import process from "node:process";
import type { NodeId } from "../../lib/raft/types.ts";
import { planNodeDown, planRun } from "../../lib/workloads/scheduler.ts";
import { parseWorkloadRequest, type WorkloadSpec } from "../../lib/workloads/spec.ts";
import {
  applyWorkloadCommand,
  emptyWorkloadState,
  type SchedulableNode,
  type WorkloadState,
} from "../../lib/workloads/state.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const NODES = 100;
const GiB = 1024 ** 3;

const nodes = new Map<NodeId, SchedulableNode>();
for (let id = 1; id <= NODES; id++) {
  nodes.set(id, {
    id,
    name: `node-${id}`,
    status: "ready",
    resources: { cores: 16, memoryBytes: 64 * GiB },
  });
}

function spec(name: string, replicas: number): WorkloadSpec {
  const checked = parseWorkloadRequest({
    name,
    replicas,
    cpu: 0.25,
    memory: "256M",
    command: ["sleep", "3600"],
  });
  if (!checked.ok) throw new Error(checked.problem.error);
  return checked.value;
}

function run(state: WorkloadState, wanted: WorkloadSpec, nodeMap = nodes): WorkloadState {
  const plan = planRun(state, nodeMap, wanted, 1);
  if (!plan.ok || !plan.command) throw new Error(plan.ok ? "nothing planned" : plan.error);
  const { state: next, result } = applyWorkloadCommand(state, plan.command, nodeMap);
  if (!result.ok || result.unplaced !== 0) throw new Error("placement did not apply in full");
  return next;
}

interface Row {
  readonly scenario: string;
  readonly placements: number;
  readonly medianMs: number;
}

function measure(scenario: string, placements: number, body: () => void): Row {
  const times: number[] = [];
  body(); // warm-up: JIT, not counted
  for (let i = 0; i < RUNS; i++) {
    const start = performance.now();
    body();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return { scenario, placements, medianMs: times[Math.floor(times.length / 2)]! };
}

const rows: Row[] = [];
const big = spec("big", 1_000);
rows.push(
  measure("1 workload × 1,000 replicas: planRun", 1_000, () => {
    const plan = planRun(emptyWorkloadState(), nodes, big, 1);
    if (!plan.ok || plan.command?.place.length !== 1_000) throw new Error("short placement");
  }),
);
rows.push(
  measure("1 workload × 1,000 replicas: planRun + apply", 1_000, () =>
    run(emptyWorkloadState(), big),
  ),
);
const small = Array.from({ length: 100 }, (_, i) => spec(`w${i}`, 10));
rows.push(
  measure("100 workloads × 10 replicas, one by one", 1_000, () => {
    let state = emptyWorkloadState();
    for (const wanted of small) state = run(state, wanted);
  }),
);
let loaded = emptyWorkloadState();
for (const wanted of small) loaded = run(loaded, wanted);
const down = new Map(nodes).set(1, { ...nodes.get(1)!, status: "down" });
const lostCount = [...loaded.allocations.values()].filter((a) => a.node === 1).length;
rows.push(
  measure(`node down (${lostCount} allocations) → planNodeDown + apply`, lostCount, () => {
    const command = planNodeDown(loaded, down, 1, 2);
    if (command?.replacements.length !== lostCount) throw new Error("short rescheduling");
    applyWorkloadCommand(loaded, command, down);
  }),
);

const header = ["scenario", "placements", "median ms", "placements/s"];
const table = [
  header,
  ...rows.map((row) => [
    row.scenario,
    String(row.placements),
    row.medianMs.toFixed(2),
    Math.round((row.placements / row.medianMs) * 1000).toLocaleString("en-US"),
  ]),
];
const widths = header.map((_, column) => Math.max(...table.map((cells) => cells[column]!.length)));
console.log(`scheduler over ${NODES} nodes, median of ${RUNS} runs`);
for (const cells of table) {
  console.log(
    cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  "),
  );
}
