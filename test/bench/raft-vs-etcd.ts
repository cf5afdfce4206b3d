/**
 * Benchmark: Mill's Raft (three raft-server.ts processes, real fsync and TCP) against etcd 3.4
 * (three members, heartbeat 100 ms, election 1000 ms, writes through the v3 JSON gateway), both
 * on 127.0.0.1, measured in one interleaved run: committed 100-byte writes at several
 * concurrencies (throughput, p50, p99, CPU per write, leader changes), failover after kill -9
 * of the leader (time until a write commits through a survivor), and leader RSS idle and after
 * many writes.
 * Usage: node --import tsx test/bench/raft-vs-etcd.ts
 * Env: BENCH_SECONDS (10 per system and concurrency, run in BENCH_SLICES (5) alternating
 *      slices), BENCH_ROUNDS (15), BENCH_CONCURRENCY ("1,16,64"), BENCH_MEMORY_COMMANDS (100000).
 *      Quick run: BENCH_SECONDS=2 BENCH_ROUNDS=3.
 * Owns: its temp directory and the processes it starts. Must not touch: anything else.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { promises as fs, openSync, readFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15);
const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? "1,16,64").split(",").map(Number);
const MEMORY_COMMANDS = Number(process.env.BENCH_MEMORY_COMMANDS ?? 100_000);
const SLICES = Number(process.env.BENCH_SLICES ?? 5);
const HOST = "127.0.0.1";
const KEY_SPACE = 10_000;
const VALUE = "v".repeat(100);
const root = new URL("../..", import.meta.url).pathname;

interface Member {
  readonly id: number;
  readonly clientPort: number;
  readonly peerPort: number;
  process?: ChildProcess;
}

interface System {
  readonly name: string;
  readonly members: Member[];
  launch(member: Member, first: boolean): ChildProcess;
  /** Forms the cluster once every member runs. */
  form(): Promise<void>;
  /** The member that currently leads, if any answers so. */
  findLeader(): Promise<Member | undefined>;
  /** A member's current term, and whether it knows a leader. */
  state(member: Member): Promise<{ term: number; hasLeader: boolean }>;
  put(member: Member, key: string, agent: Agent, timeoutMs: number): Promise<boolean>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, HOST);
  await once(server, "listening");
  const address = server.address();
  server.close();
  return typeof address === "object" && address ? address.port : 0;
}

function http(
  port: number,
  method: string,
  path: string,
  body: string,
  agent: Agent | undefined,
  timeoutMs: number,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: HOST,
        port,
        method,
        path,
        agent,
        timeout: timeoutMs,
        headers: { "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text += chunk;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end(body);
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const randomKey = () => `k${Math.floor(Math.random() * KEY_SPACE)}`;

async function waitUntil<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function makeMembers(): Promise<Member[]> {
  const members: Member[] = [];
  for (const id of [1, 2, 3])
    members.push({ id, clientPort: await freePort(), peerPort: await freePort() });
  return members;
}

function logTo(work: string, name: string): number {
  return openSync(join(work, `${name}.log`), "a");
}

async function raftSystem(work: string): Promise<System> {
  const members = await makeMembers();
  const script = join(work, "raft-server.mjs");
  await build({
    entryPoints: [join(root, "test/bench/raft-server.ts")],
    bundle: true,
    platform: "node",
    format: "esm",
    outfile: script,
    // Left out, so the require fails in the temp dir and cbor-x falls back to pure JS as shipped.
    // (Aliasing it to an empty module makes cbor-x call a missing extractStrings and fail.)
    external: ["cbor-extract"],
    logLevel: "error",
  });
  const peers = members.map((m) => `${m.id}=${HOST}:${m.peerPort}`).join(",");
  const status = async (m: Member) =>
    JSON.parse((await http(m.clientPort, "GET", "/status", "", undefined, 1000)).body) as {
      role: string;
      term: number;
      leader: number;
    };
  return {
    name: "Mill Raft",
    members,
    launch(m, first) {
      const log = logTo(work, `raft-${m.id}`);
      return spawn(
        process.execPath,
        [
          script,
          "--id",
          `${m.id}`,
          "--dir",
          join(work, `raft-${m.id}`),
          "--raft-port",
          `${m.peerPort}`,
          "--http-port",
          `${m.clientPort}`,
          "--peers",
          peers,
          ...(first && m.id === 1 ? ["--bootstrap"] : []),
        ],
        { stdio: ["ignore", log, log] },
      );
    },
    async form() {
      const first = members[0]!;
      await waitUntil("raft node 1 to lead", async () =>
        (await status(first)).role === "leader" ? true : undefined,
      );
      for (const m of members.slice(1)) {
        await waitUntil(`raft node ${m.id} to listen`, () => status(m));
        const res = await http(
          first.clientPort,
          "POST",
          `/add-voter?id=${m.id}`,
          "",
          undefined,
          60_000,
        );
        if (res.status !== 200) throw new Error(`add-voter ${m.id}: ${res.body}`);
      }
    },
    async findLeader() {
      for (const m of members.filter((x) => x.process)) {
        const s = await status(m).catch(() => undefined);
        if (s?.role === "leader") return m;
      }
      return undefined;
    },
    async state(m) {
      const s = await status(m);
      return { term: s.term, hasLeader: s.leader !== 0 };
    },
    async put(m, key, agent, timeoutMs) {
      return (
        (await http(m.clientPort, "POST", "/put", `${key}=${VALUE}`, agent, timeoutMs)).status ===
        200
      );
    },
  };
}

async function etcdSystem(work: string): Promise<System> {
  const members = await makeMembers();
  const cluster = members.map((m) => `m${m.id}=http://${HOST}:${m.peerPort}`).join(",");
  const status = async (m: Member) =>
    JSON.parse(
      (await http(m.clientPort, "POST", "/v3/maintenance/status", "{}", undefined, 1000)).body,
    ) as {
      header: { member_id: string; raft_term: string };
      leader?: string;
    };
  const b64 = (text: string) => Buffer.from(text).toString("base64");
  const value = b64(VALUE);
  const system: System = {
    name: "etcd 3.4",
    members,
    launch(m) {
      const log = logTo(work, `etcd-${m.id}`);
      const client = `http://${HOST}:${m.clientPort}`;
      const peer = `http://${HOST}:${m.peerPort}`;
      return spawn(
        "/usr/bin/etcd",
        [
          "--name",
          `m${m.id}`,
          "--data-dir",
          join(work, `etcd-${m.id}`),
          "--listen-client-urls",
          client,
          "--advertise-client-urls",
          client,
          "--listen-peer-urls",
          peer,
          "--initial-advertise-peer-urls",
          peer,
          "--initial-cluster",
          cluster,
          "--initial-cluster-state",
          "new",
          "--initial-cluster-token",
          "mill-bench",
          "--heartbeat-interval",
          "100",
          "--election-timeout",
          "1000",
          "--logger",
          "zap",
          "--log-level",
          "warn",
        ],
        { stdio: ["ignore", log, log] },
      );
    },
    async form() {
      await waitUntil("an etcd leader", () => system.findLeader());
    },
    async findLeader() {
      for (const m of members.filter((x) => x.process)) {
        const s = await status(m).catch(() => undefined);
        if (s?.leader && s.leader === s.header.member_id) return m;
      }
      return undefined;
    },
    async state(m) {
      const s = await status(m);
      return { term: Number(s.header.raft_term), hasLeader: s.leader !== undefined };
    },
    async put(m, key, agent, timeoutMs) {
      const body = JSON.stringify({ key: b64(key), value });
      return (
        (await http(m.clientPort, "POST", "/v3/kv/put", body, agent, timeoutMs)).status === 200
      );
    },
  };
  return system;
}

const children = new Set<ChildProcess>();

function launch(system: System, member: Member, first: boolean): void {
  const child = system.launch(member, first);
  member.process = child;
  children.add(child);
  child.on("exit", () => children.delete(child));
}

async function kill(member: Member): Promise<void> {
  const child = member.process!;
  member.process = undefined;
  const exited = once(child, "exit");
  child.kill("SIGKILL");
  await exited;
}

const leaderOf = (system: System) =>
  waitUntil(`a ${system.name} leader`, () => system.findLeader());

/** CPU seconds (user + system) the members' processes have used so far. */
function cpuSeconds(system: System): number {
  let ticks = 0;
  for (const m of system.members) {
    if (!m.process?.pid) continue;
    const fields = readFileSync(`/proc/${m.process.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / 100;
}

function rssMiB(member: Member): number {
  const status = readFileSync(`/proc/${member.process!.pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

/** One stretch of load on one system. */
interface LoadSlice {
  readonly latencies: number[];
  readonly seconds: number;
  readonly errors: number;
  readonly leaderChanges: number;
  readonly cpuSeconds: number;
}

interface LoadResult {
  readonly writes: number;
  readonly perSecond: number;
  readonly p50: number;
  readonly p99: number;
  readonly leaderChanges: number;
  readonly errors: number;
  /** CPU time of all three members per committed write. */
  readonly cpuMsPerWrite: number;
}

async function load(system: System, concurrency: number, seconds: number): Promise<LoadSlice> {
  const leader = await leaderOf(system);
  const termBefore = (await system.state(leader)).term;
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const latencies: number[] = [];
  let errors = 0;
  const cpuBefore = cpuSeconds(system);
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        const ok = await system.put(leader, randomKey(), agent, 5000).catch(() => false);
        if (ok) latencies.push(performance.now() - t0);
        else errors++;
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  const cpu = cpuSeconds(system) - cpuBefore;
  agent.destroy();
  const current = (await system.findLeader()) ?? leader;
  const termAfter = (await system.state(current)).term;
  return {
    latencies,
    seconds: elapsed,
    errors,
    leaderChanges: termAfter - termBefore,
    cpuSeconds: cpu,
  };
}

function summarize(slices: readonly LoadSlice[]): LoadResult {
  const latencies = slices.flatMap((s) => s.latencies).sort((a, b) => a - b);
  const sum = (pick: (s: LoadSlice) => number) => slices.reduce((n, s) => n + pick(s), 0);
  const at = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? Number.NaN;
  return {
    writes: latencies.length,
    perSecond: latencies.length / sum((s) => s.seconds),
    p50: at(0.5),
    p99: at(0.99),
    leaderChanges: sum((s) => s.leaderChanges),
    errors: sum((s) => s.errors),
    cpuMsPerWrite: (sum((s) => s.cpuSeconds) * 1000) / latencies.length,
  };
}

/** Kills the leader with SIGKILL and times the first write that commits through a survivor. */
async function failover(system: System): Promise<number> {
  const leader = await leaderOf(system);
  const survivors = system.members.filter((m) => m !== leader);
  const agent = new Agent({ keepAlive: true });
  await Promise.all(survivors.map((m) => system.put(m, "warm", agent, 5000).catch(() => false)));
  await kill(leader);
  const t0 = performance.now();
  // Attempts overlap (a new one every 10 ms, alternating survivors), so a request parked on a
  // member without a leader never delays the measurement.
  let done = false;
  let elapsed = 0;
  const attempts: Promise<void>[] = [];
  for (let i = 0; !done; i++) {
    const member = survivors[i % survivors.length]!;
    attempts.push(
      system.put(member, randomKey(), agent, 10_000).then(
        (ok) => {
          if (ok && !done) {
            done = true;
            elapsed = performance.now() - t0;
          }
        },
        () => {},
      ),
    );
    await sleep(10);
  }
  agent.destroy();
  launch(system, leader, false);
  await waitUntil(`${system.name} member ${leader.id} to rejoin`, async () =>
    (await system.state(leader)).hasLeader ? true : undefined,
  );
  await Promise.allSettled(attempts);
  await sleep(1000);
  return elapsed;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
};

async function main(): Promise<void> {
  const work = await fs.mkdtemp(join(tmpdir(), "mill-bench-"));
  const raft = await raftSystem(work);
  const etcd = await etcdSystem(work);
  const systems = [raft, etcd];
  const rows: [string, string, string, string, string][] = [];
  const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a");
  const row = (label: string, r: number, e: number, target: string, digits = 1) =>
    rows.push([
      label,
      fmt(r, digits),
      fmt(e, digits),
      e === 0 ? "n/a" : `${(r / e).toFixed(2)}x`,
      target,
    ]);
  try {
    for (const system of systems) {
      for (const m of system.members) launch(system, m, true);
      await system.form();
      await leaderOf(system);
    }
    await sleep(2000);
    const idle = await Promise.all(systems.map(async (s) => rssMiB(await leaderOf(s))));
    const total = new Map<System, number>(systems.map((s) => [s, 0]));
    let changes = [0, 0];
    for (const concurrency of CONCURRENCY) {
      // Short slices, alternating which system goes first, so that a noisy minute on this shared
      // machine falls on both systems rather than on whichever ran then.
      const slices = new Map<System, LoadSlice[]>(systems.map((s) => [s, []]));
      for (let slice = 0; slice < SLICES; slice++) {
        for (const system of slice % 2 === 0 ? systems : [...systems].reverse()) {
          slices.get(system)!.push(await load(system, concurrency, SECONDS / SLICES));
        }
      }
      const results = new Map<System, LoadResult>();
      for (const system of systems) {
        const result = summarize(slices.get(system)!);
        results.set(system, result);
        total.set(system, total.get(system)! + result.writes);
        console.error(`${system.name} c=${concurrency}: ${JSON.stringify(result)}`);
      }
      const r = results.get(raft)!;
      const e = results.get(etcd)!;
      changes = [changes[0]! + r.leaderChanges, changes[1]! + e.leaderChanges];
      row(
        `c=${concurrency} writes/s`,
        r.perSecond,
        e.perSecond,
        concurrency === 64 ? ">= 1x" : "",
        0,
      );
      row(`c=${concurrency} p50 ms`, r.p50, e.p50, "", 2);
      row(`c=${concurrency} p99 ms`, r.p99, e.p99, concurrency === 1 ? "<= 1x" : "", 2);
      row(`c=${concurrency} CPU ms per write`, r.cpuMsPerWrite, e.cpuMsPerWrite, "", 2);
    }
    rows.push(["leader changes under load", `${changes[0]}`, `${changes[1]}`, "", "0"]);
    for (const system of systems) {
      while (total.get(system)! < MEMORY_COMMANDS) {
        const slice = await load(system, 64, Math.min(10, SECONDS));
        total.set(system, total.get(system)! + slice.latencies.length);
      }
    }
    const loaded = await Promise.all(systems.map(async (s) => rssMiB(await leaderOf(s))));
    const failovers = new Map<System, number[]>(systems.map((s) => [s, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const system of round % 2 === 0 ? systems : [...systems].reverse()) {
        const ms = await failover(system);
        failovers.get(system)!.push(ms);
        console.error(`${system.name} failover round ${round + 1}: ${ms.toFixed(0)} ms`);
      }
    }
    const fr = failovers.get(raft)!;
    const fe = failovers.get(etcd)!;
    row(`failover median ms (${ROUNDS} rounds)`, median(fr), median(fe), "<= 0.75x", 0);
    rows.push([
      "failover min-max ms",
      `${Math.min(...fr).toFixed(0)}-${Math.max(...fr).toFixed(0)}`,
      `${Math.min(...fe).toFixed(0)}-${Math.max(...fe).toFixed(0)}`,
      "",
      "",
    ]);
    row("leader RSS idle MiB", idle[0]!, idle[1]!, "");
    row(
      `leader RSS after ${Math.min(total.get(raft)!, total.get(etcd)!)} writes MiB`,
      loaded[0]!,
      loaded[1]!,
      "",
    );
    console.log(`\n${SECONDS} s per load run; 100-byte values; 3 members each on ${HOST}\n`);
    console.log("| metric | Mill Raft | etcd 3.4 | ratio | target |");
    console.log("|---|---|---|---|---|");
    for (const r of rows) console.log(`| ${r.join(" | ")} |`);
  } finally {
    for (const child of children) child.kill("SIGKILL");
    await sleep(200);
    if (!process.env.BENCH_KEEP) await fs.rm(work, { recursive: true, force: true });
    else console.error(`kept ${work}`);
  }
}

await main();
