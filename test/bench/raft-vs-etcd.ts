/**
 * Benchmark: Mill's Raft (three raft-server.ts processes, real fsync and TCP; mill-raft.ts)
 * against etcd 3.4 (three members with mutually authenticated TLS peers, heartbeat 100 ms;
 * etcd.ts), all on 127.0.0.1 and measured in one interleaved run. etcd runs twice: at Mill's
 * election timeout (500 ms: both elect in [500, 1000) ms) and at its own default (1000 ms).
 * Measures committed 100-byte writes at several concurrencies (throughput, p50, p99, failed
 * writes, leader changes, the members' CPU and the client's CPU per write), failover after
 * kill -9 of the leader (until a write commits through a survivor), and leader RSS idle and after
 * many writes. Each concurrency starts with one unmeasured warm-up slice per system. Any failed
 * write fails the run (exit 1) after the table is printed.
 * Usage: node --import tsx test/bench/raft-vs-etcd.ts
 * Env: BENCH_SECONDS (10 per system and concurrency, run in BENCH_SLICES (5) alternating
 *      slices), BENCH_ROUNDS (15 failovers), BENCH_CONCURRENCY ("1,16,64"),
 *      BENCH_MEMORY_COMMANDS (100000), BENCH_BASELINE (another checkout, e.g. the previous
 *      commit's `git worktree`: its Raft runs as one more system, side by side).
 *      Quick run: BENCH_SECONDS=2 BENCH_ROUNDS=3.
 * Owns: its temp directory and the processes it starts. Must not touch: anything else.
 */

import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { promises as fs, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { errorMessage } from "../../lib/shared/errors.ts";
import { eventually } from "../e2e/harness.ts";
import { ETCD, etcdSystem, makePeerCertificates } from "./etcd.ts";
import { commitOf, loadAverage, positiveIntegerFromEnv, summarize } from "./formation.ts";
import type { KvSystem, Member } from "./kv-system.ts";
import { millRaftSystem } from "./mill-raft.ts";

const SECONDS = positiveIntegerFromEnv("BENCH_SECONDS", 10);
const ROUNDS = positiveIntegerFromEnv("BENCH_ROUNDS", 15);
const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? "1,16,64").split(",").map(Number);
const MEMORY_COMMANDS = positiveIntegerFromEnv("BENCH_MEMORY_COMMANDS", 100_000);
const SLICES = positiveIntegerFromEnv("BENCH_SLICES", 5);
const BASELINE = process.env.BENCH_BASELINE;
const KEY_SPACE = 10_000;
/** A write that has not committed by then counts as failed. */
const WRITE_TIMEOUT_MS = 5000;
const repo = new URL("../..", import.meta.url).pathname;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const randomKey = () => `k${Math.floor(Math.random() * KEY_SPACE)}`;

const children = new Set<Member>();

function launch(system: KvSystem, member: Member, first: boolean): void {
  const child = system.launch(member, first);
  member.process = child;
  children.add(member);
  child.on("exit", () => children.delete(member));
}

async function kill(member: Member): Promise<void> {
  const child = member.process!;
  member.process = undefined;
  const exited = once(child, "exit");
  child.kill("SIGKILL");
  await exited;
}

const leaderOf = (system: KvSystem) =>
  eventually(`a ${system.name} leader`, () => system.findLeader(), 30_000);

/** CPU seconds (user + system) the members' processes have used so far. */
function cpuSeconds(system: KvSystem): number {
  let ticks = 0;
  for (const m of system.members) {
    if (!m.process?.pid) continue;
    const fields = readFileSync(`/proc/${m.process.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / 100;
}

/** This process's CPU seconds: the clients of every system run here. */
function clientCpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

function rssMiB(member: Member): number {
  const status = readFileSync(`/proc/${member.process!.pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

/** One stretch of load on one system. */
interface LoadSlice {
  readonly latencies: number[];
  readonly seconds: number;
  readonly failures: number;
  readonly firstFailure?: string;
  readonly leaderChanges: number;
  readonly cpuSeconds: number;
  readonly clientCpuSeconds: number;
}

async function load(system: KvSystem, concurrency: number, seconds: number): Promise<LoadSlice> {
  const leader = await leaderOf(system);
  const termBefore = (await system.state(leader)).term;
  const writer = system.writer(leader, concurrency, WRITE_TIMEOUT_MS);
  const latencies: number[] = [];
  let failures = 0;
  let firstFailure: string | undefined;
  const cpuBefore = cpuSeconds(system);
  const clientBefore = clientCpuSeconds();
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        try {
          await writer.put(randomKey());
          latencies.push(performance.now() - t0);
        } catch (error) {
          failures++;
          firstFailure ??= errorMessage(error);
        }
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  const cpu = cpuSeconds(system) - cpuBefore;
  const clientCpu = clientCpuSeconds() - clientBefore;
  writer.close();
  const current = (await system.findLeader()) ?? leader;
  const termAfter = (await system.state(current)).term;
  return {
    latencies,
    seconds: elapsed,
    failures,
    ...(firstFailure === undefined ? {} : { firstFailure }),
    leaderChanges: termAfter - termBefore,
    cpuSeconds: cpu,
    clientCpuSeconds: clientCpu,
  };
}

interface LoadResult {
  readonly writes: number;
  readonly perSecond: number;
  readonly p50: number;
  readonly p99: number;
  readonly failures: number;
  readonly leaderChanges: number;
  /** CPU time of all three members per committed write. */
  readonly cpuMsPerWrite: number;
  /** CPU time of the benchmark process (the client) per committed write. */
  readonly clientCpuMsPerWrite: number;
}

function combine(slices: readonly LoadSlice[]): LoadResult {
  const latencies = slices.flatMap((s) => s.latencies).sort((a, b) => a - b);
  const sum = (pick: (s: LoadSlice) => number) => slices.reduce((n, s) => n + pick(s), 0);
  const at = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? Number.NaN;
  return {
    writes: latencies.length,
    perSecond: latencies.length / sum((s) => s.seconds),
    p50: at(0.5),
    p99: at(0.99),
    failures: sum((s) => s.failures),
    leaderChanges: sum((s) => s.leaderChanges),
    cpuMsPerWrite: (sum((s) => s.cpuSeconds) * 1000) / latencies.length,
    clientCpuMsPerWrite: (sum((s) => s.clientCpuSeconds) * 1000) / latencies.length,
  };
}

/** Kills the leader with SIGKILL and times the first write that commits through a survivor. */
async function failover(system: KvSystem): Promise<number> {
  const leader = await leaderOf(system);
  const survivors = system.members.filter((m) => m !== leader);
  const writers = survivors.map((m) => system.writer(m, 64, 10_000));
  // Connections open before the kill, so the measurement holds no connection set-up.
  await Promise.all(writers.map((writer) => writer.put("warm").catch(() => {})));
  await kill(leader);
  const t0 = performance.now();
  // Attempts overlap (a new one every 10 ms, alternating survivors), so a request parked on a
  // member without a leader never delays the measurement.
  let done = false;
  let elapsed = 0;
  const attempts: Promise<void>[] = [];
  for (let i = 0; !done; i++) {
    attempts.push(
      writers[i % writers.length]!.put(randomKey()).then(
        () => {
          if (!done) {
            done = true;
            elapsed = performance.now() - t0;
          }
        },
        () => {},
      ),
    );
    await sleep(10);
  }
  await Promise.allSettled(attempts);
  for (const writer of writers) writer.close();
  launch(system, leader, false);
  await eventually(`${system.name} member ${leader.id} to rejoin`, async () =>
    (await system.state(leader).catch(() => undefined))?.hasLeader ? true : undefined,
  );
  await sleep(1000);
  return elapsed;
}

/** One row per metric: a value per system, then the first system's ratio to each other one. */
class Table {
  readonly rows: string[][] = [];
  constructor(readonly systems: readonly KvSystem[]) {}

  add(label: string, values: readonly number[], target = "", digits = 1): void {
    const fmt = (n: number) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a");
    const first = values[0]!;
    const ratios = values
      .slice(1)
      .map((v) => (Number.isFinite(first / v) ? `${(first / v).toFixed(2)}x` : "n/a"));
    this.rows.push([label, ...values.map(fmt), ...ratios, target]);
  }

  text(label: string, values: readonly string[]): void {
    this.rows.push([label, ...values, ...this.systems.slice(1).map(() => ""), ""]);
  }

  print(): void {
    const [first, ...others] = this.systems;
    const header = [
      "metric",
      ...this.systems.map((s) => s.name),
      ...others.map((o) => `${first!.name} / ${o.name}`),
      "target",
    ];
    console.log(`| ${header.join(" | ")} |`);
    console.log(`|${header.map(() => "---").join("|")}|`);
    for (const row of this.rows) console.log(`| ${row.join(" | ")} |`);
  }
}

function stopEverything(): void {
  for (const member of children) member.process?.kill("SIGKILL");
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    stopEverything();
    process.exit(1);
  });
}

async function main(): Promise<void> {
  const work = await fs.mkdtemp(join(tmpdir(), "mill-bench-"));
  const loadBefore = loadAverage();
  const systems: KvSystem[] = [];
  let failedWrites = 0;
  const failureNotes: string[] = [];
  const noteFailures = (system: KvSystem, what: string, slice: LoadSlice) => {
    if (slice.failures === 0) return;
    failedWrites += slice.failures;
    failureNotes.push(
      `${system.name} ${what}: ${slice.failures} failed, first: ${slice.firstFailure}`,
    );
  };
  try {
    const certificates = makePeerCertificates(work);
    systems.push(await millRaftSystem(work, `Mill ${commitOf(repo)}`));
    if (BASELINE) systems.push(await millRaftSystem(work, `Mill ${commitOf(BASELINE)}`, BASELINE));
    for (const electionMs of [500, 1000])
      systems.push(
        await etcdSystem(work, { name: `etcd T=${electionMs}`, electionMs, certificates }),
      );
    const table = new Table(systems);
    for (const system of systems) {
      for (const m of system.members) launch(system, m, true);
      await system.form();
      await leaderOf(system);
    }
    await sleep(2000);
    const idle = await Promise.all(systems.map(async (s) => rssMiB(await leaderOf(s))));
    const total = new Map<KvSystem, number>(systems.map((s) => [s, 0]));
    const changes = new Map<KvSystem, number>(systems.map((s) => [s, 0]));
    const sliceSeconds = SECONDS / SLICES;
    for (const concurrency of CONCURRENCY) {
      for (const system of systems)
        noteFailures(
          system,
          `c=${concurrency} warm-up`,
          await load(system, concurrency, sliceSeconds),
        );
      // Short slices, rotating which system goes first, so that a noisy minute on this shared
      // machine falls on every system rather than on whichever ran then.
      const slices = new Map<KvSystem, LoadSlice[]>(systems.map((s) => [s, []]));
      for (let slice = 0; slice < SLICES; slice++) {
        const order = systems.map((_, i) => systems[(i + slice) % systems.length]!);
        for (const system of order) {
          const measured = await load(system, concurrency, sliceSeconds);
          noteFailures(system, `c=${concurrency}`, measured);
          slices.get(system)!.push(measured);
        }
      }
      const results = systems.map((system) => {
        const result = combine(slices.get(system)!);
        total.set(system, total.get(system)! + result.writes);
        changes.set(system, changes.get(system)! + result.leaderChanges);
        console.error(`${system.name} c=${concurrency}: ${JSON.stringify(result)}`);
        return result;
      });
      const c = `c=${concurrency}`;
      table.add(
        `${c} writes/s`,
        results.map((r) => r.perSecond),
        concurrency === 64 ? ">= 1x" : "",
        0,
      );
      table.add(
        `${c} p50 ms`,
        results.map((r) => r.p50),
        "",
        2,
      );
      table.add(
        `${c} p99 ms`,
        results.map((r) => r.p99),
        concurrency === 1 ? "<= 1x" : "",
        2,
      );
      table.add(
        `${c} members' CPU ms per write`,
        results.map((r) => r.cpuMsPerWrite),
        "",
        2,
      );
      table.add(
        `${c} client CPU ms per write`,
        results.map((r) => r.clientCpuMsPerWrite),
        "",
        2,
      );
      table.text(
        `${c} failed writes`,
        results.map((r) => `${r.failures}`),
      );
    }
    table.text(
      "leader changes under load",
      systems.map((s) => `${changes.get(s)}`),
    );
    for (const system of systems) {
      while (total.get(system)! < MEMORY_COMMANDS) {
        const slice = await load(system, 64, Math.min(10, SECONDS));
        noteFailures(system, "filling for the memory row", slice);
        total.set(system, total.get(system)! + slice.latencies.length);
        // The run has failed already; a system that keeps failing would never fill up.
        if (slice.failures > 0) break;
      }
    }
    const loaded = await Promise.all(systems.map(async (s) => rssMiB(await leaderOf(s))));
    const failovers = new Map<KvSystem, number[]>(systems.map((s) => [s, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < systems.length; i++) {
        const system = systems[(i + round) % systems.length]!;
        const ms = await failover(system);
        failovers.get(system)!.push(ms);
        console.error(`${system.name} failover round ${round + 1}: ${ms.toFixed(0)} ms`);
      }
    }
    const fo = systems.map((s) => summarize(failovers.get(s)!));
    table.add(
      `failover median ms (${ROUNDS} rounds)`,
      fo.map((f) => f.median),
      "",
      0,
    );
    table.text(
      "failover min-max ms",
      fo.map((f) => `${f.min.toFixed(0)}-${f.max.toFixed(0)}`),
    );
    table.add("leader RSS idle MiB", idle);
    const written = Math.min(...total.values());
    table.add(`leader RSS after ${written} writes MiB`, loaded);
    const etcdVersion = execFileSync(ETCD, ["--version"], { encoding: "utf8" }).split("\n")[0];
    console.log(
      `\n${SECONDS} s per system and concurrency in ${SLICES} interleaved slices after a warm-up slice; ` +
        `100-byte values; 3 members each on 127.0.0.1; ${etcdVersion}, peers on mutual TLS, ` +
        `heartbeat 100 ms, --snapshot-count 10000; load average (1/5/15 min) before ${loadBefore}, after ${loadAverage()}\n`,
    );
    table.print();
    if (failedWrites > 0) {
      console.error(`\nFAILED: ${failedWrites} writes failed\n${failureNotes.join("\n")}`);
      process.exitCode = 1;
    }
  } finally {
    for (const system of systems) system.close();
    stopEverything();
    await sleep(200);
    if (!process.env.BENCH_KEEP) await fs.rm(work, { recursive: true, force: true });
    else console.error(`kept ${work}`);
  }
}

await main();
