/**
 * Benchmark (a script, not a test; root only): the default `--mesh wireguard` with the real
 * dist/mill in network namespaces (test/netns/harness.ts), fresh three-host clusters.
 * Each round forms one cluster per WireGuard binary, in alternating order: the one dist/mill
 * embeds, and the previous one run through MILL_WG_BINARY (BENCH_PREVIOUS_WG, by default Debian
 * 12's /usr/bin/wireguard-go when installed). Measures:
 * - each `mill join` until it returns (mesh up and voter committed), split into phases seen from
 *   outside: the joiner's log and wireguard-go's start time (see PhaseMark in ./formation.ts);
 * - iperf3 throughput from node 2 to node 1 over the mesh addresses and over the underlay (the
 *   veth/bridge) in the same cluster, in alternating order;
 * - during the mesh iperf3: the CPU of both wireguard-go and both node processes, the machine's
 *   busy share of its cores (/proc/stat), and the TUN evidence of offloads (IFF_VNET_HDR; bytes
 *   per packet the kernel hands the sender's wireguard-go, see test/netns/mesh/tun.ts);
 * - memory of each idle node process (mill) and of its wireguard-go: VmRSS from
 *   /proc/PID/status, and its private part: RssAnon, and Pss from /proc/PID/smaps_rollup;
 *   wireguard-go again after the iperf3 runs.
 * Usage: npm run build && node --import tsx test/bench/mesh.ts
 * Env: BENCH_ROUNDS (5), BENCH_IPERF_SECONDS (5) per iperf3 run, BENCH_IDLE_SECONDS (3) of quiet
 * after the joins before memory is read, BENCH_PREVIOUS_WG (a path, or "none"). Quick run:
 * BENCH_ROUNDS=1 BENCH_IPERF_SECONDS=1.
 * Owns: the namespaces and processes it starts (the harness cleanup kills and deletes them, even on
 * failure), its temp data dirs. Must not touch: anything else.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import process from "node:process";
import { eventually, type StatusJson } from "../e2e/harness.ts";
import { createHosts, type Host, type Hosts, notRootReason } from "../netns/harness.ts";
import { SYSTEM_WIREGUARD, wireguardVersion } from "../netns/mesh/agent-client.ts";
import { bytesPerPacket, countersOf, tunOffloadsIn } from "../netns/mesh/tun.ts";
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
  summarize,
  timed,
  withCleanup,
} from "./formation.ts";

const repo = new URL("../..", import.meta.url).pathname;
const mill = join(repo, "dist", "mill");
const IPERF_PORT = 5201;
/** Linux reports process and machine CPU time in ticks of 1/100 s. */
const TICKS_PER_SECOND = 100;

/** A WireGuard binary under test: the embedded one (no override) or another through MILL_WG_BINARY. */
interface Variant {
  readonly label: string;
  readonly wgBinary?: string;
}

interface Memory {
  readonly rss: number;
  readonly rssAnon: number;
  readonly pss: number;
}

/** What the machine did while iperf3 ran over the mesh. */
interface MeshLoad {
  /** Percent of one core: wireguard-go on node 1 (receiver) and node 2 (sender). */
  readonly wireguardCpu: readonly [number, number];
  /** Percent of one core: the mill node process on node 1 and node 2. */
  readonly nodeCpu: readonly [number, number];
  /** Percent of all the machine's cores busy (everyone's processes, not only the bench's). */
  readonly machineBusy: number;
  /** Mean bytes per packet the kernel handed node 2's wireguard-go through its TUN. */
  readonly senderTunBytesPerPacket: number;
}

interface Round {
  readonly processStart: number;
  readonly init: number;
  readonly joins: readonly number[];
  readonly phases: readonly (readonly PhaseMark[])[];
  readonly meshMbits: number;
  readonly underlayMbits: number;
  readonly meshLoad: MeshLoad;
  /** Whether both ends' TUNs carry IFF_VNET_HDR. */
  readonly vnetHeader: boolean;
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

/** /proc/PID/stat's fields after the command name, which is in parentheses and may hold spaces. */
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/**
 * When a process started, on the performance.now() clock: its start time in /proc/PID/stat is in
 * clock ticks since boot, like /proc/uptime, so good to about 10 ms.
 */
function processStartedAt(pid: number): number {
  const now = performance.now();
  const uptimeSeconds = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
  const startTicks = Number(statFields(pid)[19]);
  return now - uptimeSeconds * 1000 + (startTicks * 1000) / TICKS_PER_SECOND;
}

/** User plus system CPU time of a process so far, in ticks. */
function cpuTicksOf(pid: number): number {
  const fields = statFields(pid);
  return Number(fields[11]) + Number(fields[12]);
}

/** The machine's busy and total CPU ticks so far, over all cores (idle and iowait are not busy). */
function machineTicks(): { busy: number; total: number } {
  const [, ...values] = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/);
  const ticks = values.slice(0, 8).map(Number);
  const total = ticks.reduce((sum, value) => sum + value, 0);
  return { busy: total - ticks[3]! - ticks[4]!, total };
}

const pidIn = (dataDir: string, file: string) =>
  Number(readFileSync(join(dataDir, file), "utf8").trim());

class MeshCluster {
  readonly root = mkdtempSync(join(tmpdir(), "mill-bench-mesh-"));
  token = "";

  constructor(
    readonly net: Hosts,
    readonly variant: Variant,
  ) {}

  host(node: number): Host {
    return this.net.hosts[node - 1]!;
  }

  dataDir(node: number): string {
    return join(this.root, `node-${node}`);
  }

  iface(node: number): string {
    return `mb${this.net.runId}${node}`;
  }

  /**
   * One `mill` command in the node's namespace, with an empty environment (default timings) but
   * for the variant's MILL_WG_BINARY, which the node it starts inherits.
   */
  mill(node: number, args: readonly string[]) {
    const override = this.variant.wgBinary ? [`MILL_WG_BINARY=${this.variant.wgBinary}`] : [];
    return this.host(node).exec(
      "env",
      ["-i", `PATH=${process.env.PATH}`, ...override, mill, ...args],
      {
        timeoutMs: 90_000,
      },
    );
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
      this.iface(node),
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
          // `join` starts the node's process before it registers, so mill.log comes first.
          ["CLI start, preflight, agent spawned early (mill.log appears)", log.appearedAt],
          [
            "TLS, POST /v1/join, NodeRegister applied on the leader (its mesh gains the peer)",
            leaderLog.first(/ mesh peers \+/),
          ],
          [
            "answer saved (keys, config), the waiting agent reads it, embedded binaries checked, wireguard-go exec (/proc start time)",
            processStartedAt(pidIn(this.dataDir(node), "wireguard.pid")),
          ],
          // wireguard.pid is written beside the start-up, not on its path, so it cannot mark an end.
          [
            "wireguard-go up (UAPI socket, key set, address, link and MTU), the join answer's peers set over the UAPI",
            log.first(/ mesh peers /),
          ],
          ["Raft and the APIs listen", log.first(/ serving on /)],
          ...confirmMarks(log, returnedAt),
        ]),
      };
    } finally {
      leaderLog.stop();
      log.stop();
    }
  }

  /** `mill status --json` on a node; undefined (and the reason kept) when it fails, e.g. a 503. */
  lastStatusFailure = "";
  async status(
    node: number,
  ): Promise<(StatusJson & { nodes: { meshAddress?: string }[] }) | undefined> {
    const result = await this.mill(node, ["status", "--json", "--data-dir", this.dataDir(node)]);
    if (result.code === 0) return JSON.parse(result.stdout);
    this.lastStatusFailure = result.stderr.trim();
    return undefined;
  }

  /**
   * iperf3 from node 2 to node 1's `address` for `seconds`; megabits per second received. With
   * `during`, its begin() runs once the server listens and end() when the client has finished.
   */
  async iperf(
    address: string,
    seconds: number,
    during?: { begin(): void; end(): void },
  ): Promise<number> {
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
      during?.begin();
      const report = await this.host(2).run(
        "iperf3",
        ["-c", address, "-p", String(IPERF_PORT), "-t", String(seconds), "-J"],
        { timeoutMs: (seconds + 30) * 1000 },
      );
      during?.end();
      const parsed = JSON.parse(report) as { end: { sum_received: { bits_per_second: number } } };
      return parsed.end.sum_received.bits_per_second / 1e6;
    } finally {
      server.kill("SIGKILL");
    }
  }

  /** The mesh iperf3 run, with the CPU and TUN counters read around it. */
  async meshIperf(address: string, seconds: number): Promise<[number, MeshLoad]> {
    const wireguard = [1, 2].map((node) => pidIn(this.dataDir(node), "wireguard.pid"));
    const nodes = [1, 2].map((node) => pidIn(this.dataDir(node), "mill.pid"));
    const sample = () => ({
      at: performance.now(),
      wireguard: wireguard.map(cpuTicksOf),
      nodes: nodes.map(cpuTicksOf),
      machine: machineTicks(),
      tun: countersOf(wireguard[1]!, this.iface(2)),
    });
    let first: ReturnType<typeof sample> | undefined;
    let last: ReturnType<typeof sample> | undefined;
    const mbits = await this.iperf(address, seconds, {
      begin: () => {
        first = sample();
      },
      end: () => {
        last = sample();
      },
    });
    const a = first!;
    const b = last!;
    const elapsedSeconds = (b.at - a.at) / 1000;
    const percentOfCore = (before: number, after: number) =>
      ((after - before) / TICKS_PER_SECOND / elapsedSeconds) * 100;
    return [
      mbits,
      {
        wireguardCpu: [
          percentOfCore(a.wireguard[0]!, b.wireguard[0]!),
          percentOfCore(a.wireguard[1]!, b.wireguard[1]!),
        ],
        nodeCpu: [percentOfCore(a.nodes[0]!, b.nodes[0]!), percentOfCore(a.nodes[1]!, b.nodes[1]!)],
        machineBusy:
          ((b.machine.busy - a.machine.busy) / (b.machine.total - a.machine.total)) * 100,
        senderTunBytesPerPacket: bytesPerPacket(a.tun, b.tun, "tx"),
      },
    ];
  }
}

async function runRound(
  variant: Variant,
  round: number,
  iperfSeconds: number,
  idleMs: number,
): Promise<Round> {
  const cluster = new MeshCluster(await createHosts(3), variant);
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
      return seen?.nodes.length === 3 && seen.nodes.every((node) => node.status === "ready")
        ? seen
        : undefined;
    }).catch((error: Error) => {
      throw new Error(
        `${error.message}; last failed status: ${cluster.lastStatusFailure || "none"}`,
      );
    });
    await new Promise((resolve) => setTimeout(resolve, idleMs));
    const nodes = [1, 2, 3];
    const nodeMemory = nodes.map((node) => memoryOf(pidIn(cluster.dataDir(node), "mill.pid")));
    const wireguardPid = (node: number) => pidIn(cluster.dataDir(node), "wireguard.pid");
    const wireguardIdle = nodes.map((node) => memoryOf(wireguardPid(node)));
    const offloads = await Promise.all(
      [1, 2].map((node) => tunOffloadsIn(cluster.host(node), cluster.iface(node))),
    );

    const meshAddress = status.nodes[0]?.meshAddress;
    if (!meshAddress) throw new Error("mill status --json shows no mesh address for node-1");
    let mesh: [number, MeshLoad] | undefined;
    let underlay: number | undefined;
    const runs = [
      async () => {
        mesh = await cluster.meshIperf(meshAddress, iperfSeconds);
      },
      async () => {
        underlay = await cluster.iperf(cluster.host(1).underlay, iperfSeconds);
      },
    ];
    for (const run of round % 2 === 0 ? runs.reverse() : runs) await run();
    const wireguardLoaded = [1, 2].map((node) => memoryOf(wireguardPid(node)));
    return {
      processStart,
      init,
      joins,
      phases,
      meshMbits: mesh![0],
      underlayMbits: underlay!,
      meshLoad: mesh![1],
      vnetHeader: offloads.every(Boolean),
      nodeMemory,
      wireguardIdle,
      wireguardLoaded,
    };
  });
}

/** The embedded binary, and the previous one when it can be found. */
function variants(): { list: Variant[]; note: string } {
  const embedded: Variant = { label: "embedded wireguard-go" };
  const chosen = process.env.BENCH_PREVIOUS_WG ?? SYSTEM_WIREGUARD;
  if (chosen === "none")
    return { list: [embedded], note: "previous binary: not run (BENCH_PREVIOUS_WG=none)" };
  const version = wireguardVersion(chosen);
  if (version === undefined) {
    return {
      list: [embedded],
      note: `previous binary: ${chosen} cannot run, so only the embedded one was measured (on Debian 12: apt-get install wireguard-go)`,
    };
  }
  return {
    list: [embedded, { label: `MILL_WG_BINARY=${chosen} (${version})`, wgBinary: chosen }],
    note: `previous binary: ${chosen}, which reports ${version}`,
  };
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const mbits = (value: number) =>
  value >= 1000 ? `${(value / 1000).toFixed(2)} Gbit/s` : `${value.toFixed(0)} Mbit/s`;
const percent = (value: number) => `${value.toFixed(0)} %`;

function fullTable(results: readonly Round[]): void {
  const memoryRows = (what: string, samples: Memory[]) =>
    (["rss", "rssAnon", "pss"] as const).map(
      (field) =>
        [
          `${what}: ${{ rss: "VmRSS", rssAnon: "RssAnon (private)", pss: "Pss" }[field]}`,
          samples.map((memory) => memory[field]),
          mib,
        ] as const,
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

/** Medians of each variant side by side, with the underlay measured in the same clusters. */
function sideBySide(byVariant: readonly [Variant, readonly Round[]][]): void {
  const median = (values: number[]) => summarize(values).median;
  const rows: [string, (rounds: readonly Round[]) => string][] = [
    ["iperf3 over the mesh", (r) => mbits(median(r.map((x) => x.meshMbits)))],
    [
      "iperf3 over the underlay, same clusters",
      (r) => mbits(median(r.map((x) => x.underlayMbits))),
    ],
    [
      "TUN with IFF_VNET_HDR (offloads), both ends",
      (r) =>
        r.every((x) => x.vnetHeader) ? "yes" : r.some((x) => x.vnetHeader) ? "some rounds" : "no",
    ],
    [
      "bytes per packet into the sender's wireguard-go (TUN tx)",
      (r) => `${median(r.map((x) => x.meshLoad.senderTunBytesPerPacket)).toFixed(0)} B`,
    ],
    [
      "wireguard-go CPU, receiver (node 1), % of a core",
      (r) => percent(median(r.map((x) => x.meshLoad.wireguardCpu[0]))),
    ],
    [
      "wireguard-go CPU, sender (node 2), % of a core",
      (r) => percent(median(r.map((x) => x.meshLoad.wireguardCpu[1]))),
    ],
    [
      "node process (mill) CPU, nodes 1 and 2, % of a core",
      (r) =>
        `${percent(median(r.map((x) => x.meshLoad.nodeCpu[0])))}, ${percent(median(r.map((x) => x.meshLoad.nodeCpu[1])))}`,
    ],
    [
      "mesh throughput per core of wireguard-go CPU (both ends together)",
      (r) =>
        mbits(
          median(
            r.map(
              (x) =>
                x.meshMbits / ((x.meshLoad.wireguardCpu[0] + x.meshLoad.wireguardCpu[1]) / 100),
            ),
          ),
        ),
    ],
    [
      "wireguard-go RSS after iperf3, nodes 1 and 2",
      (r) => mib(median(r.flatMap((x) => x.wireguardLoaded.map((memory) => memory.rss)))),
    ],
    [
      "machine busy during the mesh run, % of all cores",
      (r) => percent(median(r.map((x) => x.meshLoad.machineBusy))),
    ],
  ];
  console.log(
    `| measurement (medians) | ${byVariant.map(([variant]) => variant.label).join(" | ")} |`,
  );
  console.log(`|---|${byVariant.map(() => "---").join("|")}|`);
  for (const [label, cell] of rows) {
    console.log(`| ${label} | ${byVariant.map(([, rounds]) => cell(rounds)).join(" | ")} |`);
  }
  if (byVariant.length === 2) {
    const ratio =
      median(byVariant[0]![1].map((r) => r.meshMbits)) /
      median(byVariant[1]![1].map((r) => r.meshMbits));
    console.log(`\nmesh throughput, embedded / previous: ${ratio.toFixed(2)}x`);
  }
}

async function main(): Promise<void> {
  if (notRootReason) throw new Error(`test/bench/mesh.ts: ${notRootReason}`);
  if (!existsSync(mill)) throw new Error("no dist/mill: run `npm run build` first");
  const rounds = benchRounds();
  const iperfSeconds = positiveIntegerFromEnv("BENCH_IPERF_SECONDS", 5);
  const idleMs = positiveIntegerFromEnv("BENCH_IDLE_SECONDS", 3) * 1000;
  const { list, note } = variants();
  const loadBefore = loadAverage();
  const results = new Map<Variant, Round[]>(list.map((variant) => [variant, []]));
  for (let round = 1; round <= rounds; round++) {
    // Alternating which binary goes first, so neither always meets the same moment of load.
    for (const variant of round % 2 === 0 ? [...list].reverse() : list) {
      const result = await runRound(variant, round, iperfSeconds, idleMs);
      results.get(variant)!.push(result);
      process.stderr.write(
        `round ${round}/${rounds}, ${variant.label}: joins ${result.joins.map(formatMs).join(", ")}; iperf3 mesh ${result.meshMbits.toFixed(0)} Mbit/s, underlay ${result.underlayMbits.toFixed(0)} Mbit/s\n`,
      );
    }
  }
  console.log(
    `WireGuard mesh in network namespaces, dist/mill, default settings; ${rounds} rounds of fresh 3-node clusters, one per binary; iperf3 ${iperfSeconds} s node-2 → node-1; ${note}; load average (1/5/15 min) before ${loadBefore}, after ${loadAverage()}.\n`,
  );
  sideBySide([...results.entries()]);
  console.log(`\n${list[0]!.label}, every measurement:\n`);
  fullTable(results.get(list[0]!)!);
}

await main();
