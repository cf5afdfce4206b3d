/**
 * Benchmark (a script, not a test; root only): the default `--mesh wireguard` with the real
 * dist/mill in network namespaces (test/netns/harness.ts), one fresh three-host cluster per round.
 * Measures:
 * - each `mill join` until it returns (mesh up and voter committed), split into phases seen from
 *   outside: the joiner's log and wireguard.pid appearing (see PhaseMark in ./formation.ts);
 * - iperf3 throughput from node 2 to node 1 over the mesh addresses and over the underlay (the
 *   veth/bridge) in the same round, in alternating order;
 * - memory of each idle node process (mill) and of its wireguard-go: VmRSS from
 *   /proc/PID/status, and its private part: RssAnon, and Pss from /proc/PID/smaps_rollup;
 *   wireguard-go again after the iperf3 runs.
 * Usage: npm run build && node --import tsx test/bench/mesh.ts
 * Env: BENCH_ROUNDS (5) clusters, BENCH_IPERF_SECONDS (5) per iperf3 run, BENCH_IDLE_SECONDS (3)
 * of quiet after the joins before memory is read. Quick run: BENCH_ROUNDS=1 BENCH_IPERF_SECONDS=1.
 * Owns: the namespaces and processes it starts (the harness cleanup kills and deletes them, even on
 * failure), its temp data dirs. Must not touch: anything else.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import process from "node:process";
import { eventually, type StatusJson } from "../e2e/harness.ts";
import { createHosts, type Host, type Hosts, notRootReason } from "../netns/harness.ts";
import {
  benchRounds,
  confirmMarks,
  formatMs,
  LineClock,
  loadAverage,
  type PhaseMark,
  phaseDurations,
  phaseRows,
  positiveIntegerFromEnv,
  printTable,
  timed,
  withCleanup,
} from "./formation.ts";

const repo = new URL("../..", import.meta.url).pathname;
const mill = join(repo, "dist", "mill");
const IPERF_PORT = 5201;

interface Memory {
  readonly rss: number;
  readonly rssAnon: number;
  readonly pss: number;
}

interface Round {
  readonly processStart: number;
  readonly init: number;
  readonly joins: readonly number[];
  readonly phases: readonly (readonly PhaseMark[])[];
  readonly meshMbits: number;
  readonly underlayMbits: number;
  readonly nodeMemory: readonly Memory[];
  readonly wireguardIdle: readonly Memory[];
  readonly wireguardLoaded: readonly Memory[];
}

/** Memory of a live process, in bytes. */
function memoryOf(pid: number): Memory {
  const kib = (text: string, field: string) => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(text);
    if (!match) throw new Error(`no ${field} for pid ${pid}`);
    return Number(match[1]) * 1024;
  };
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  return { rss: kib(status, "VmRSS"), rssAnon: kib(status, "RssAnon"), pss: kib(rollup, "Pss") };
}

/**
 * When a process started, on the performance.now() clock: its start time in /proc/PID/stat is in
 * clock ticks (1/100 s on Linux) since boot, like /proc/uptime, so good to about 10 ms.
 */
function processStartedAt(pid: number): number {
  const now = performance.now();
  const uptimeSeconds = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which is in parentheses and may hold spaces.
  const startTicks = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
  return now - uptimeSeconds * 1000 + startTicks * 10;
}

const pidIn = (dataDir: string, file: string) =>
  Number(readFileSync(join(dataDir, file), "utf8").trim());

class MeshCluster {
  readonly root = mkdtempSync(join(tmpdir(), "mill-bench-mesh-"));
  token = "";

  constructor(readonly net: Hosts) {}

  host(node: number): Host {
    return this.net.hosts[node - 1]!;
  }

  dataDir(node: number): string {
    return join(this.root, `node-${node}`);
  }

  /** One `mill` command in the node's namespace, with an empty environment (default timings). */
  mill(node: number, args: readonly string[]) {
    return this.host(node).exec("env", ["-i", `PATH=${process.env.PATH}`, mill, ...args], {
      timeoutMs: 90_000,
    });
  }

  nodeArgs(node: number): string[] {
    return [
      "--advertise",
      this.host(node).underlay,
      "--name",
      `node-${node}`,
      "--data-dir",
      this.dataDir(node),
      "--mesh-interface",
      `mb${this.net.runId}${node}`,
      "--no-service",
    ];
  }

  async init(): Promise<void> {
    const result = await this.mill(1, ["init", ...this.nodeArgs(1)]);
    const token = /Token: (mill_t_\S+)/.exec(result.stdout)?.[1];
    if (result.code !== 0 || !token) throw new Error(`init failed: ${result.stderr}`);
    this.token = token;
  }

  /** Joins through node 1; resolves with the join's wall time and its phases. */
  async join(node: number): Promise<{ took: number; phases: PhaseMark[] }> {
    const leaderLog = LineClock.ofFile(join(this.dataDir(1), "mill.log"), { onlyNew: true });
    const log = LineClock.ofFile(join(this.dataDir(node), "mill.log"));
    const wireguardPid = LineClock.ofFile(join(this.dataDir(node), "wireguard.pid"));
    try {
      const startedAt = performance.now();
      const result = await this.mill(node, [
        "join",
        `${this.host(1).underlay}:4400`,
        "--token",
        this.token,
        ...this.nodeArgs(node),
      ]);
      const returnedAt = performance.now();
      if (result.code !== 0) throw new Error(`join of node ${node} failed: ${result.stderr}`);
      return {
        took: returnedAt - startedAt,
        phases: phaseDurations(startedAt, [
          [
            "CLI start, preflight, TLS, POST /v1/join, NodeRegister applied on the leader (its mesh gains the peer)",
            leaderLog.first(/ mesh peers \+/),
          ],
          ["answer saved (keys, config), agent spawned (mill.log appears)", log.appearedAt],
          [
            "agent process start, config, embedded binaries checked, wireguard-go exec (/proc start time)",
            processStartedAt(pidIn(this.dataDir(node), "wireguard.pid")),
          ],
          [
            "wireguard-go up: UAPI socket, key set, address, link and MTU (wireguard.pid written)",
            wireguardPid.appearedAt,
          ],
          ["the join answer's peers set over the UAPI", log.first(/ mesh peers /)],
          ["Raft and the APIs listen", log.first(/ serving on /)],
          ...confirmMarks(log, returnedAt),
        ]),
      };
    } finally {
      leaderLog.stop();
      log.stop();
      wireguardPid.stop();
    }
  }

  async status(node: number): Promise<StatusJson & { nodes: { meshAddress?: string }[] }> {
    const result = await this.mill(node, ["status", "--json", "--data-dir", this.dataDir(node)]);
    if (result.code !== 0) throw new Error(`status on node ${node}: ${result.stderr}`);
    return JSON.parse(result.stdout);
  }

  /** iperf3 from node 2 to node 1's `address` for `seconds`; megabits per second received. */
  async iperf(address: string, seconds: number): Promise<number> {
    const server = this.host(1).spawn("iperf3", [
      "-s",
      "-1",
      "--forceflush",
      "-B",
      address,
      "-p",
      String(IPERF_PORT),
    ]);
    const serverOutput = LineClock.ofStreams(server.stdout, server.stderr);
    try {
      await serverOutput.waitFor(/Server listening/, 10_000);
      const report = await this.host(2).run(
        "iperf3",
        ["-c", address, "-p", String(IPERF_PORT), "-t", String(seconds), "-J"],
        { timeoutMs: (seconds + 30) * 1000 },
      );
      const parsed = JSON.parse(report) as { end: { sum_received: { bits_per_second: number } } };
      return parsed.end.sum_received.bits_per_second / 1e6;
    } finally {
      server.kill("SIGKILL");
    }
  }
}

async function runRound(round: number, iperfSeconds: number, idleMs: number): Promise<Round> {
  const cluster = new MeshCluster(await createHosts(3));
  const cleanup = async () => {
    await cluster.net.cleanup();
    rmSync(cluster.root, { recursive: true, force: true });
  };
  return withCleanup(cleanup, async () => {
    const [, processStart] = await timed(() => cluster.mill(1, ["--help"]));
    const [, init] = await timed(() => cluster.init());
    const joins: number[] = [];
    const phases: PhaseMark[][] = [];
    for (const node of [2, 3]) {
      const joined = await cluster.join(node);
      joins.push(joined.took);
      phases.push(joined.phases);
    }
    const status = await eventually("three ready nodes", async () => {
      const seen = await cluster.status(1);
      return seen.nodes.length === 3 && seen.nodes.every((node) => node.status === "ready")
        ? seen
        : undefined;
    });
    await new Promise((resolve) => setTimeout(resolve, idleMs));
    const nodes = [1, 2, 3];
    const nodeMemory = nodes.map((node) => memoryOf(pidIn(cluster.dataDir(node), "mill.pid")));
    const wireguardPid = (node: number) => pidIn(cluster.dataDir(node), "wireguard.pid");
    const wireguardIdle = nodes.map((node) => memoryOf(wireguardPid(node)));

    const meshAddress = status.nodes[0]?.meshAddress;
    if (!meshAddress) throw new Error("mill status --json shows no mesh address for node-1");
    const targets = [
      ["mesh", meshAddress],
      ["underlay", cluster.host(1).underlay],
    ] as const;
    const throughput = new Map<string, number>();
    for (const [name, address] of round % 2 === 0 ? [...targets].reverse() : targets) {
      throughput.set(name, await cluster.iperf(address, iperfSeconds));
    }
    const wireguardLoaded = [1, 2].map((node) => memoryOf(wireguardPid(node)));
    return {
      processStart,
      init,
      joins,
      phases,
      meshMbits: throughput.get("mesh")!,
      underlayMbits: throughput.get("underlay")!,
      nodeMemory,
      wireguardIdle,
      wireguardLoaded,
    };
  });
}

async function main(): Promise<void> {
  if (notRootReason) throw new Error(`test/bench/mesh.ts: ${notRootReason}`);
  const rounds = benchRounds();
  const iperfSeconds = positiveIntegerFromEnv("BENCH_IPERF_SECONDS", 5);
  const idleMs = positiveIntegerFromEnv("BENCH_IDLE_SECONDS", 3) * 1000;
  const loadBefore = loadAverage();
  const results: Round[] = [];
  for (let round = 1; round <= rounds; round++) {
    const result = await runRound(round, iperfSeconds, idleMs);
    results.push(result);
    process.stderr.write(
      `round ${round}/${rounds}: joins ${result.joins.map(formatMs).join(", ")}; iperf3 mesh ${result.meshMbits.toFixed(0)} Mbit/s, underlay ${result.underlayMbits.toFixed(0)} Mbit/s\n`,
    );
  }
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  const mbits = (value: number) =>
    value >= 1000 ? `${(value / 1000).toFixed(2)} Gbit/s` : `${value.toFixed(0)} Mbit/s`;
  const memoryRows = (what: string, samples: Memory[]) =>
    (["rss", "rssAnon", "pss"] as const).map(
      (field) =>
        [
          `${what}: ${{ rss: "VmRSS", rssAnon: "RssAnon (private)", pss: "Pss" }[field]}`,
          samples.map((memory) => memory[field]),
          mib,
        ] as const,
    );
  console.log(
    `WireGuard mesh in network namespaces, dist/mill, default settings; ${rounds} fresh 3-node clusters; iperf3 ${iperfSeconds} s node-2 → node-1; load average (1/5/15 min) before ${loadBefore}, after ${loadAverage()}.\n`,
  );
  printTable([
    ["`mill init` returns", results.map((r) => r.init)],
    ["`mill join` node-2 returns (mesh up, voter committed)", results.map((r) => r.joins[0]!)],
    ["`mill join` node-3 returns (mesh up, voter committed)", results.map((r) => r.joins[1]!)],
    ["`mill join`, both joins", results.flatMap((r) => r.joins)],
    ...phaseRows(results.flatMap((r) => r.phases)),
    [
      "`dist/mill --help` in a namespace (one process start, for scale)",
      results.map((r) => r.processStart),
    ],
    ["iperf3 over the mesh (WireGuard)", results.map((r) => r.meshMbits), mbits],
    ["iperf3 over the underlay (veth + bridge)", results.map((r) => r.underlayMbits), mbits],
    [
      "mesh / underlay throughput",
      results.map((r) => r.meshMbits / r.underlayMbits),
      (ratio) => `${(ratio * 100).toFixed(1)} %`,
    ],
    ...memoryRows(
      "idle node process (mill), each node",
      results.flatMap((r) => r.nodeMemory),
    ),
    ...memoryRows(
      "idle wireguard-go, each node",
      results.flatMap((r) => r.wireguardIdle),
    ),
    ...memoryRows(
      "wireguard-go after iperf3 (nodes 1 and 2)",
      results.flatMap((r) => r.wireguardLoaded),
    ),
  ]);
}

await main();
