/**
 * Benchmark (a script, not a test): cluster formation with the real dist/mill on loopback and
 * `--mesh none`, through the e2e harness (test/e2e/harness.ts). Measures, over fresh clusters:
 * - wall time from `mill init` to three ready nodes (init, two joins, `mill status --json` on
 *   node 1 showing three ready), with each step's share;
 * - kill -9 of a follower until NodeDown is committed, with the default health timings and with
 *   FAST_HEALTH. The end point is the leader's log line "node NAME is down", which the agent
 *   writes only after its NodeDown proposal is committed and applied; the bench reads that log
 *   every 20 ms, so a figure is late by at most one poll. `mill status` on a survivor confirms.
 * Also exports the small measuring tools that test/bench/mesh.ts shares.
 * Usage: npm run build && node --import tsx test/bench/formation.ts
 * Env: BENCH_ROUNDS (5) clusters per timing set. Quick run: BENCH_ROUNDS=1.
 * Owns: the clusters it starts (the harness kills them and removes their files).
 * Must not touch: anything else.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import process from "node:process";
import type { Readable } from "node:stream";
import { pathToFileURL } from "node:url";
import { healthSettings } from "../../lib/node/settings.ts";
import { eventually, FAST_HEALTH, LocalCluster } from "../e2e/harness.ts";

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

/** A markdown table row: label, median, min, max, sample count. */
export function summaryRow(label: string, values: readonly number[], format = formatMs): string {
  const summary = summarize(values);
  return `| ${label} | ${format(summary.median)} | ${format(summary.min)} | ${format(summary.max)} | ${summary.count} |`;
}

export const SUMMARY_HEADER = "|---|---|---|---|---|";

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

  /** Polls `path` every `intervalMs` (a missing file counts as empty) until stop(). */
  static ofFile(path: string, intervalMs = 20): LineClock {
    const clock = new LineClock();
    clock.#timer = setInterval(() => clock.#readFrom(path), intervalMs);
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

/** Milliseconds an async step takes. */
export async function timed<T>(step: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const value = await step();
  return [value, performance.now() - start];
}

/**
 * Where a `mill join` spends its time, from marks the bench observes: DATA_DIR/mill.log appears
 * when registration has answered and the CLI starts the agent; the agent logs "serving on" once
 * its mesh (if any) is configured and its ports listen, and "following node" when the first Raft
 * message from the leader reaches it (sent once the CLI's confirm made it a learner); the CLI
 * returns after the leader committed its promotion to voter and it answered as a member. Each value is the time since the previous mark, in ms.
 */
export interface JoinPhases {
  readonly register: number;
  readonly agentServing: number;
  readonly raftContact: number;
  readonly voterConfirmed: number;
}

export function joinPhases(startedAt: number, returnedAt: number, log: LineClock): JoinPhases {
  const marks = [log.appearedAt, log.first(/ serving on /), log.first(/ following node /)];
  if (marks.some((mark) => mark === undefined))
    throw new Error(`the joiner's log lacks a phase mark: ${JSON.stringify(log.lines)}`);
  const [registered, serving, following] = marks as number[];
  return {
    register: registered! - startedAt,
    agentServing: serving! - registered!,
    raftContact: following! - serving!,
    voterConfirmed: returnedAt - following!,
  };
}

/** Rows for the median of each join phase, labelled as in JoinPhases. */
export function phaseRows(phases: readonly JoinPhases[]): string[] {
  const labels: Record<keyof JoinPhases, string> = {
    register: "· · join phase: register (CLI start, TLS, POST /v1/join, NodeRegister committed)",
    agentServing:
      "· · join phase: agent start until it serves (process start, mesh up, ports listen)",
    raftContact:
      "· · join phase: CLI sees it listening, POST /v1/join/confirm, learner added, first Raft message",
    voterConfirmed: "· · join phase: catch-up, promotion to voter committed, member answers",
  };
  return (Object.keys(labels) as (keyof JoinPhases)[]).map((key) =>
    summaryRow(
      labels[key],
      phases.map((phase) => phase[key]),
    ),
  );
}

interface Formation {
  readonly init: number;
  readonly joins: readonly number[];
  readonly phases: readonly JoinPhases[];
  readonly ready: number;
  readonly total: number;
  readonly nodeDown: number;
}

async function formOneCluster(env: Record<string, string>): Promise<Formation> {
  const cluster = new LocalCluster("dist", env);
  try {
    const start = performance.now();
    const [token, init] = await timed(() => cluster.init());
    const joins: number[] = [];
    const phases: JoinPhases[] = [];
    for (const node of [2, 3]) {
      const log = LineClock.ofFile(`${cluster.dataDir(node)}/mill.log`);
      try {
        const startedAt = performance.now();
        const result = await cluster.join(node, token);
        const returnedAt = performance.now();
        if (result.status !== 0) throw new Error(`join of node ${node} failed: ${result.stderr}`);
        joins.push(returnedAt - startedAt);
        phases.push(joinPhases(startedAt, returnedAt, log));
      } finally {
        log.stop();
      }
    }
    const [status, ready] = await timed(() =>
      eventually("three ready nodes", async () => {
        const seen = await cluster.status(1);
        return seen.nodes.length === 3 && seen.nodes.every((node) => node.status === "ready")
          ? seen
          : undefined;
      }),
    );
    const total = performance.now() - start;

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
      return { init, joins, phases, ready, total, nodeDown: downAt - killedAt };
    } finally {
      leaderLog.stop();
    }
  } finally {
    cluster.cleanup();
  }
}

async function main(): Promise<void> {
  const rounds = benchRounds();
  const loadBefore = loadAverage();
  const sets = [
    { name: "default", env: {} as Record<string, string> },
    { name: "fast", env: FAST_HEALTH },
  ];
  const results = new Map<string, Formation[]>(sets.map((set) => [set.name, []]));
  // Interleaved, so both timing sets see the same machine load.
  for (let round = 1; round <= rounds; round++) {
    for (const set of sets) {
      const formation = await formOneCluster(set.env);
      results.get(set.name)!.push(formation);
      process.stderr.write(
        `round ${round}/${rounds} ${set.name}: formed in ${formatMs(formation.total)}, NodeDown after ${formatMs(formation.nodeDown)}\n`,
      );
    }
  }
  const plain = results.get("default")!;
  const fast = results.get("fast")!;
  const timings = (env: Record<string, string>) => {
    const health = healthSettings(env);
    const seconds = (ms: number) => `${ms / 1000} s`;
    return `heartbeat ${seconds(health.heartbeatIntervalMs)}, timeout ${seconds(health.heartbeatTimeoutMs)}, tick ${seconds(health.watchdogTickMs)}`;
  };
  console.log(
    `Formation on loopback, --mesh none, dist/mill; ${rounds} fresh clusters per timing set, interleaved; load average (1/5/15 min) before ${loadBefore}, after ${loadAverage()}.\n`,
  );
  console.log("| measurement | median | min | max | runs |");
  console.log(SUMMARY_HEADER);
  console.log(
    summaryRow(
      "`mill init` → 3 ready nodes (init + 2 joins + `status` shows 3 ready)",
      plain.map((f) => f.total),
    ),
  );
  console.log(
    summaryRow(
      "· `mill init` returns",
      plain.map((f) => f.init),
    ),
  );
  console.log(
    summaryRow(
      "· `mill join` node-2 returns",
      plain.map((f) => f.joins[0]!),
    ),
  );
  console.log(
    summaryRow(
      "· `mill join` node-3 returns",
      plain.map((f) => f.joins[1]!),
    ),
  );
  for (const row of phaseRows(plain.flatMap((f) => f.phases))) console.log(row);
  console.log(
    summaryRow(
      "· `mill status --json` shows 3 ready",
      plain.map((f) => f.ready),
    ),
  );
  console.log(
    summaryRow(
      "`mill init` → 3 ready nodes, with FAST_HEALTH",
      fast.map((f) => f.total),
    ),
  );
  console.log(
    summaryRow(
      `kill -9 of a follower → NodeDown committed, default timings (${timings({})})`,
      plain.map((f) => f.nodeDown),
    ),
  );
  console.log(
    summaryRow(
      `kill -9 of a follower → NodeDown committed, FAST_HEALTH (${timings(FAST_HEALTH)})`,
      fast.map((f) => f.nodeDown),
    ),
  );
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
