/**
 * Benchmark (a script, not a test): cluster formation with the real dist/mill on loopback and
 * `--mesh none`, through the e2e harness (test/e2e/harness.ts). Measures, over fresh clusters:
 * - wall time from `mill init` to three ready nodes (init, two joins, `mill status --json` on
 *   node 1 showing three ready), with each step's share;
 * - kill -9 of a follower until NodeDown is committed, with the default health timings and with
 *   FAST_HEALTH, at a random point of its heartbeat cycle one to two intervals after formation.
 *   The end point is the leader's log line "node NAME is down", which the agent writes only after
 *   its NodeDown proposal (and any follow-up it triggers) is committed and applied; the bench reads
 *   that log every 20 ms, so a figure is late by at most one poll. `mill status` on a survivor
 *   confirms.
 * Also exports the small measuring tools that test/bench/mesh.ts shares.
 * Usage: npm run build && node --import tsx test/bench/formation.ts
 * Env: BENCH_ROUNDS (5) clusters per timing set. Quick run: BENCH_ROUNDS=1.
 *      BENCH_BASELINE: another checkout with its own built dist/mill (e.g. the previous commit's
 *      `git worktree`), run interleaved with this one and compared in a second table.
 * Owns: the clusters it starts (the harness kills them and removes their files).
 * Must not touch: anything else.
 */
import { execFileSync } from "node:child_process";
import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import process from "node:process";
import type { Readable } from "node:stream";
import { pathToFileURL } from "node:url";
import { healthSettings } from "../../lib/node/settings.ts";
import { eventually, FAST_HEALTH, LocalCluster } from "../e2e/harness.ts";

const repo = new URL("../..", import.meta.url).pathname;

/** BENCH_ROUNDS, or the fallback; anything but a positive integer is refused. */
export function benchRounds(fallback = 5): number {
  return positiveIntegerFromEnv("BENCH_ROUNDS", fallback);
}

export function positiveIntegerFromEnv(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1)
    throw new Error(`${name} must be a positive integer, got "${text}"`);
  return value;
}

export interface Summary {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly count: number;
}

/** Median (the lower middle for an even count), min and max. */
export function summarize(values: readonly number[]): Summary {
  if (values.length === 0) throw new Error("no samples to summarize");
  const sorted = [...values].sort((a, b) => a - b);
  return {
    median: sorted[Math.floor((sorted.length - 1) / 2)]!,
    min: sorted[0]!,
    max: sorted.at(-1)!,
    count: sorted.length,
  };
}

export function formatMs(ms: number): string {
  return ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

/** A table row: its label, its samples, and how to print one (default: a duration in ms). */
export type Row = readonly [
  label: string,
  samples: readonly number[],
  format?: (n: number) => string,
];

/** Prints a markdown table of each row's median, min, max and sample count. */
export function printTable(rows: readonly Row[]): void {
  console.log("| measurement | median | min | max | runs |");
  console.log("|---|---|---|---|---|");
  for (const [label, samples, format = formatMs] of rows) {
    const summary = summarize(samples);
    console.log(
      `| ${label} | ${format(summary.median)} | ${format(summary.min)} | ${format(summary.max)} | ${summary.count} |`,
    );
  }
}

/** The short commit of a checkout, marked "+changes" when its sources differ from that commit. */
export function commitOf(checkout: string): string {
  const git = (...args: string[]) =>
    execFileSync("git", ["-C", checkout, ...args], { encoding: "utf8" }).trim();
  const head = git("rev-parse", "--short", "HEAD");
  return git("status", "--porcelain", "main.ts", "lib", "build", "test/bench")
    ? `${head}+changes`
    : head;
}

export function loadAverage(): string {
  return loadavg()
    .map((value) => value.toFixed(2))
    .join(" ");
}

/**
 * Lines of a growing file or a stream, each stamped with performance.now() when the bench first
 * saw it. Logs carry no timestamps, so this is the clock for every phase.
 */
export class LineClock {
  readonly lines: { readonly at: number; readonly text: string }[] = [];
  /** When the polled file was first found to exist. */
  appearedAt: number | undefined;
  #partial = "";
  #offset = 0;
  #timer: NodeJS.Timeout | undefined;

  /**
   * Polls `path` every 20 ms (a missing file counts as empty) until stop(); with `onlyNew`, what
   * the file holds already is skipped.
   */
  static ofFile(path: string, options: { onlyNew?: boolean } = {}): LineClock {
    const clock = new LineClock();
    if (options.onlyNew && existsSync(path)) clock.#offset = statSync(path).size;
    clock.#timer = setInterval(() => clock.#readFrom(path), 20);
    return clock;
  }

  static ofStreams(...streams: (Readable | null)[]): LineClock {
    const clock = new LineClock();
    for (const stream of streams) stream?.on("data", (chunk) => clock.#feed(String(chunk)));
    return clock;
  }

  /** When the first line matching `pattern` was seen. */
  first(pattern: RegExp): number | undefined {
    return this.lines.find((line) => pattern.test(line.text))?.at;
  }

  async waitFor(pattern: RegExp, timeoutMs: number): Promise<number> {
    return eventually(`a line matching ${pattern}`, async () => this.first(pattern), timeoutMs);
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #readFrom(path: string): void {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch {
      return;
    }
    this.appearedAt ??= performance.now();
    try {
      const buffer = Buffer.alloc(64 * 1024);
      for (;;) {
        const read = readSync(fd, buffer, 0, buffer.length, this.#offset);
        if (read === 0) break;
        this.#offset += read;
        this.#feed(buffer.subarray(0, read).toString("utf8"));
      }
    } finally {
      closeSync(fd);
    }
  }

  #feed(text: string): void {
    const at = performance.now();
    const parts = (this.#partial + text).split("\n");
    this.#partial = parts.pop()!;
    for (const part of parts) this.lines.push({ at, text: part });
  }
}

/**
 * Runs `step` with `cleanup` also bound to Ctrl-C and SIGTERM, so an interrupted bench leaves no
 * node running; `cleanup` runs once either way.
 */
export async function withCleanup<T>(
  cleanup: () => void | Promise<void>,
  step: () => Promise<T>,
): Promise<T> {
  let done: Promise<void> | undefined;
  const once = () => {
    done ??= Promise.resolve().then(cleanup);
    return done;
  };
  const interrupted = (signal: NodeJS.Signals) => {
    void once().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", interrupted);
  try {
    return await step();
  } finally {
    process.off("SIGINT", interrupted);
    process.off("SIGTERM", interrupted);
    await once();
  }
}

/** Milliseconds an async step takes. */
export async function timed<T>(step: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const value = await step();
  return [value, performance.now() - start];
}

/**
 * A phase of a `mill join` and the moment the bench saw it end. Every mark comes from outside the
 * joiner: DATA_DIR/mill.log appears when registration has answered and the CLI starts the agent;
 * the agent logs "serving on" once its mesh (if any) is up and its ports listen, and "following
 * node" when the first Raft message from the leader reaches it (sent once the CLI's confirm made
 * it a learner); the CLI returns after the leader committed its promotion to voter and the node
 * answered as a member.
 */
export type PhaseMark = readonly [phase: string, endedAt: number | undefined];

export const REGISTER_PHASE = "register (CLI start, TLS, POST /v1/join, NodeRegister committed)";

/** The marks of a join's last two phases, read from the joiner's log. */
export function confirmMarks(log: LineClock, returnedAt: number): PhaseMark[] {
  return [
    [
      "CLI sees the node listen, POST /v1/join/confirm, learner added, first Raft message arrives",
      log.first(/ following node /),
    ],
    ["catch-up, promotion to voter committed, node answers as a member", returnedAt],
  ];
}

/** How long each phase took: the time from the previous mark (the first from `startedAt`). */
export function phaseDurations(startedAt: number, marks: readonly PhaseMark[]): PhaseMark[] {
  let previous = startedAt;
  return marks.map(([phase, endedAt]) => {
    if (endedAt === undefined) throw new Error(`the bench never saw the end of phase "${phase}"`);
    const took = endedAt - previous;
    previous = endedAt;
    return [phase, took];
  });
}

/** One row per phase, in order, from the durations of many joins. */
export function phaseRows(joins: readonly (readonly PhaseMark[])[]): Row[] {
  return (joins[0] ?? []).map(([phase], index) => [
    `· · join phase: ${phase}`,
    joins.map((join) => join[index]![1]!),
  ]);
}

interface Formation {
  readonly processStart: number;
  readonly init: number;
  readonly joins: readonly number[];
  readonly phases: readonly (readonly PhaseMark[])[];
  readonly ready: number;
  readonly total: number;
  readonly nodeDown: number;
}

/** An executable under test: this checkout's dist/mill, or BENCH_BASELINE's for comparison. */
interface Build {
  readonly name: string;
  readonly binary: string;
  /** Whether to time a join's phases from its log lines (another build may word them otherwise). */
  readonly phases: boolean;
  /** Whether it knows `--no-service` (builds before the service hand-over install none). */
  readonly noService: boolean;
}

async function formOneCluster(env: Record<string, string>, build: Build): Promise<Formation> {
  const cluster = new LocalCluster("dist", env, build.binary, build.noService);
  return withCleanup(
    () => cluster.cleanup(),
    async () => {
      const [, processStart] = await timed(() => cluster.run(["--help"]));
      const start = performance.now();
      const [token, init] = await timed(() => cluster.init());
      const joins: number[] = [];
      const phases: PhaseMark[][] = [];
      for (const node of [2, 3]) {
        const log = LineClock.ofFile(`${cluster.dataDir(node)}/mill.log`);
        try {
          const startedAt = performance.now();
          const result = await cluster.join(node, token);
          const returnedAt = performance.now();
          if (result.status !== 0) throw new Error(`join of node ${node} failed: ${result.stderr}`);
          joins.push(returnedAt - startedAt);
          if (build.phases)
            phases.push(
              phaseDurations(startedAt, [
                [REGISTER_PHASE, log.appearedAt],
                [
                  "agent start until it serves (process start, ports listen)",
                  log.first(/ serving on /),
                ],
                ...confirmMarks(log, returnedAt),
              ]),
            );
        } finally {
          log.stop();
        }
      }
      const [status, ready] = await timed(() =>
        eventually("three ready nodes", async () => {
          const seen = await cluster.statusIfAnswering(1);
          return seen?.nodes.length === 3 && seen.nodes.every((node) => node.status === "ready")
            ? seen
            : undefined;
        }),
      );
      const total = performance.now() - start;

      // Kill at a random point of the victim's heartbeat cycle, once it has sent heartbeats, so
      // the figure is the steady state's: between timeout - interval and timeout + tick.
      const { heartbeatIntervalMs } = healthSettings(env);
      await new Promise((resolve) =>
        setTimeout(resolve, heartbeatIntervalMs * (1 + Math.random())),
      );
      const leader = Number(status.leader.replace("node-", ""));
      const victim = [3, 2, 1].find((node) => node !== leader)!;
      const leaderLog = LineClock.ofFile(`${cluster.dataDir(leader)}/mill.log`);
      try {
        const killedAt = performance.now();
        cluster.kill(victim);
        const downAt = await leaderLog.waitFor(new RegExp(`node node-${victim} is down$`), 120_000);
        const survivor = [1, 2, 3].find((node) => node !== victim)!;
        const seen = await cluster.status(survivor);
        if (seen.nodes.find((node) => node.name === `node-${victim}`)?.status !== "down")
          throw new Error(`the leader logged node-${victim} down but node ${survivor} disagrees`);
        return { processStart, init, joins, phases, ready, total, nodeDown: downAt - killedAt };
      } finally {
        leaderLog.stop();
      }
    },
  );
}

async function main(): Promise<void> {
  const rounds = benchRounds();
  const loadBefore = loadAverage();
  const sets = [
    { name: "default", env: {} as Record<string, string> },
    { name: "fast", env: FAST_HEALTH },
  ];
  const current: Build = {
    name: `dist/mill ${commitOf(repo)}`,
    binary: join(repo, "dist", "mill"),
    phases: true,
    noService: true,
  };
  const builds = [current];
  const baseline = process.env.BENCH_BASELINE;
  if (baseline) {
    const binary = join(baseline, "dist", "mill");
    if (!existsSync(binary))
      throw new Error(`BENCH_BASELINE has no ${binary}: run npm ci && npm run build there first`);
    const help = execFileSync(binary, ["init", "--help"], { encoding: "utf8" });
    builds.push({
      name: `dist/mill ${commitOf(baseline)}`,
      binary,
      phases: false,
      noService: help.includes("--no-service"),
    });
  }
  const results = new Map<string, Formation[]>();
  const of = (build: Build, set: string) => results.get(`${build.name} ${set}`) ?? [];
  // Interleaved, so every build and timing set sees the same machine load.
  for (let round = 1; round <= rounds; round++) {
    for (let i = 0; i < builds.length; i++) {
      const build = builds[(i + round) % builds.length]!;
      for (const set of sets) {
        const formation = await formOneCluster(set.env, build);
        results.set(`${build.name} ${set.name}`, [...of(build, set.name), formation]);
        process.stderr.write(
          `round ${round}/${rounds} ${build.name} ${set.name}: formed in ${formatMs(formation.total)}, NodeDown after ${formatMs(formation.nodeDown)}\n`,
        );
      }
    }
  }
  const plain = of(current, "default");
  const fast = of(current, "fast");
  const timings = (env: Record<string, string>) => {
    const health = healthSettings(env);
    const seconds = (ms: number) => `${ms / 1000} s`;
    return `heartbeat ${seconds(health.heartbeatIntervalMs)}, timeout ${seconds(health.heartbeatTimeoutMs)}, tick ${seconds(health.watchdogTickMs)}`;
  };
  console.log(
    `Formation on loopback, --mesh none, ${builds.map((b) => b.name).join(" and ")}; ${rounds} fresh clusters per build and timing set, interleaved; load average (1/5/15 min) before ${loadBefore}, after ${loadAverage()}.\n`,
  );
  printTable([
    [
      "`mill init` → 3 ready nodes (init + 2 joins + `status` shows 3 ready)",
      plain.map((f) => f.total),
    ],
    ["· `mill init` returns", plain.map((f) => f.init)],
    ["· `mill join` node-2 returns", plain.map((f) => f.joins[0]!)],
    ["· `mill join` node-3 returns", plain.map((f) => f.joins[1]!)],
    ...phaseRows(plain.flatMap((f) => f.phases)),
    ["· `mill status --json` shows 3 ready", plain.map((f) => f.ready)],
    ["`dist/mill --help` (one process start, for scale)", plain.map((f) => f.processStart)],
    ["`mill init` → 3 ready nodes, with FAST_HEALTH", fast.map((f) => f.total)],
    [
      `kill -9 of a follower (random point of its heartbeat cycle) → NodeDown committed, default timings (${timings({})})`,
      plain.map((f) => f.nodeDown),
    ],
    [
      `kill -9 of a follower (random point of its heartbeat cycle) → NodeDown committed, FAST_HEALTH (${timings(FAST_HEALTH)})`,
      fast.map((f) => f.nodeDown),
    ],
  ]);
  if (builds.length > 1) {
    const other = builds[1]!;
    const medians = (pick: (build: Build) => number[]) =>
      builds.map((build) => summarize(pick(build)).median);
    const rows: [string, number[]][] = [
      ["`mill init` → 3 ready nodes", medians((b) => of(b, "default").map((f) => f.total))],
      ["· `mill init` returns", medians((b) => of(b, "default").map((f) => f.init))],
      ["· each `mill join` returns", medians((b) => of(b, "default").flatMap((f) => f.joins))],
      [
        "`mill init` → 3 ready nodes, FAST_HEALTH",
        medians((b) => of(b, "fast").map((f) => f.total)),
      ],
      [
        "kill -9 → NodeDown, default timings",
        medians((b) => of(b, "default").map((f) => f.nodeDown)),
      ],
      ["kill -9 → NodeDown, FAST_HEALTH", medians((b) => of(b, "fast").map((f) => f.nodeDown))],
    ];
    console.log(`\nSide by side, medians of ${rounds} runs each:\n`);
    console.log(`| measurement | ${current.name} | ${other.name} | ratio |`);
    console.log("|---|---|---|---|");
    for (const [label, [mine, theirs]] of rows)
      console.log(
        `| ${label} | ${formatMs(mine!)} | ${formatMs(theirs!)} | ${(mine! / theirs!).toFixed(2)}x |`,
      );
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
