/**
 * Faults on real processes: a cluster of the built `dist/mill` in network namespaces with the
 * default WireGuard mesh goes through a seeded schedule of kill -9/restart, SIGSTOP/SIGCONT and
 * nftables partitions (leader isolated, follower isolated, one-way, ring) while spare hosts join.
 * After each fault heals, check.ts must find nothing wrong; at the end no NodeDown may have hit
 * a node that was healthy through its whole timeout window.
 *
 * CI runs a fixed list of seeds; FAULT_SEED, FAULT_ROUNDS and FAULT_STEPS run a longer soak
 * (see README.md). A failure prints the seed, the schedule, what happened and the replay command.
 */

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { notRootReason } from "../harness.ts";
import {
  checkAgreement,
  checkDigests,
  type FaultWindow,
  falseNodeDowns,
  type NodeDownSeen,
  type NodeView,
} from "./check.ts";
import { FaultCluster } from "./cluster.ts";
import {
  describeFault,
  formatSchedule,
  involvedNodes,
  majoritySide,
  makeSchedule,
  type ResolvedFault,
  replayCommand,
  resolveFault,
  type Schedule,
  unheard,
} from "./schedule.ts";

const CI_SEEDS = [1, 2];
const INITIAL_NODES = 3;
const SPARE_HOSTS = Number(process.env.FAULT_JOINERS ?? 2);
const STEPS = Number(process.env.FAULT_STEPS ?? 5);
/** Heartbeats every 200 ms, NodeDown after 2 s of silence, watchdog every 100 ms. */
const HEARTBEAT_TIMEOUT_MS = 2000;
const HEALTH = { MILL_HEARTBEAT_TIMEOUT_MS: String(HEARTBEAT_TIMEOUT_MS) };
/** A majority side must answer a read-barrier `mill status` within this long after a fault starts. */
const PROGRESS_BOUND_MS = 15_000;
/** After healing, all nodes must agree within this long. */
const SETTLE_BOUND_MS = 45_000;
/** An operator keeps retrying a join this long. */
const JOIN_DEADLINE_MS = 90_000;
/**
 * Slack after a fault ends before silence counts against a node again: one heartbeat interval,
 * one watchdog tick and the log watcher's poll (100 ms), with room to spare. Restarts and joins
 * end when the agent follows a leader, so their start-up time is inside the window already.
 */
const RECOVERY_GRACE_MS = 600;
/** FAULT_VERBOSE=1 prints the full report and keeps the files of passing runs too. */
const VERBOSE = process.env.FAULT_VERBOSE === "1";

function seedList(): number[] {
  const first = process.env.FAULT_SEED;
  if (first === undefined) return CI_SEEDS;
  const rounds = Number(process.env.FAULT_ROUNDS ?? 1);
  return Array.from({ length: rounds }, (_, i) => Number(first) + i);
}

interface RoundReport {
  readonly seed: number;
  readonly stepsSurvived: number;
  readonly joinsAcked: number;
  readonly ackedLost: number;
  readonly nodeDowns: number;
  readonly falseNodeDowns: number;
  readonly nodeDownsWhileJoining: number;
  readonly slowestProgressMs: number;
  /** Times every member's state digest was compared and found equal. */
  readonly digestsAgreed: number;
  readonly problems: readonly string[];
}

class Round {
  readonly events: string[] = [];
  readonly windows: FaultWindow[] = [];
  readonly members: string[] = [];
  readonly acked: string[] = [];
  readonly problems: string[] = [];
  readonly progressMs: number[] = [];
  digestsCompared = 0;
  views: NodeView[] = [];

  constructor(
    readonly cluster: FaultCluster,
    readonly schedule: Schedule,
  ) {}

  record(text: string): void {
    this.events.push(`${this.cluster.now()} ms: ${text}`);
  }

  get spares(): string[] {
    return this.cluster.names.filter((name) => !this.members.includes(name));
  }

  /** Retries `mill join` through the members in turn, as an operator would, until it exits 0. */
  async join(name: string): Promise<void> {
    const start = this.cluster.now();
    const deadline = start + JOIN_DEADLINE_MS;
    for (let attempt = 0; this.cluster.now() < deadline; attempt++) {
      const via = this.members[attempt % this.members.length]!;
      const result = await this.cluster.joinOnce(name, via, 40_000);
      if (result.code === 0) {
        this.record(`join of ${name} via ${via} acknowledged (attempt ${attempt + 1})`);
        this.acked.push(name);
        this.members.push(name);
        // Until its agent runs and knows the leader, a registered node cannot send heartbeats.
        const end = await this.heardAgain(name, start);
        this.windows.push({ node: name, start, end, what: "joining" });
        return;
      }
      this.record(
        `join of ${name} via ${via} failed (${result.code}): ${result.stderr.trim().split("\n").at(-1)}`,
      );
      await sleep(1000);
    }
    this.problems.push(`join of ${name} never succeeded within ${JOIN_DEADLINE_MS} ms`);
  }

  /** Polls every member until check.ts finds nothing wrong, or reports what is still wrong. */
  async settle(): Promise<boolean> {
    const start = this.cluster.now();
    const deadline = start + SETTLE_BOUND_MS;
    let problems: string[] = [];
    for (let polls = 1; this.cluster.now() < deadline; polls++) {
      const answers = await Promise.allSettled(this.members.map((name) => this.cluster.view(name)));
      const views = answers.flatMap((answer) =>
        answer.status === "fulfilled" ? [answer.value] : [],
      );
      problems = answers.flatMap((answer) =>
        answer.status === "rejected" ? [(answer.reason as Error).message] : [],
      );
      problems.push(...checkAgreement(views, this.members));
      if (problems.length === 0) problems.push(...(await this.compareDigests()));
      this.views = views;
      if (problems.length === 0) {
        this.record(`settled after ${this.cluster.now() - start} ms (${polls} polls)`);
        return true;
      }
      if (polls === 1) this.record(`not settled yet: ${problems.join("; ")}`);
      await sleep(500);
    }
    this.problems.push(...problems.map((problem) => `after healing: ${problem}`));
    return false;
  }

  /** The applied index and state digest of every member (GET /v1/debug/state). */
  async compareDigests(): Promise<string[]> {
    const states = await Promise.all(
      this.members.map(async (name) => [name, await this.cluster.debugState(name)] as const),
    );
    const problems = checkDigests(new Map(states));
    if (problems.length === 0) this.digestsCompared++;
    return problems;
  }

  async inject(resolved: ResolvedFault): Promise<void> {
    const { fault } = resolved;
    if (fault.kind === "kill") this.cluster.kill(resolved.process!);
    else if (fault.kind === "pause") this.cluster.pause(resolved.process!);
    else await this.cluster.cut(resolved.cuts, resolved.match!);
  }

  /** Ends the fault; resolves with the time the node can be heard again. */
  async heal(resolved: ResolvedFault): Promise<number> {
    const { fault } = resolved;
    if (fault.kind === "pause") {
      this.cluster.resume(resolved.process!);
      return this.cluster.now();
    }
    if (fault.kind !== "kill") {
      await this.cluster.heal();
      return this.cluster.now();
    }
    const restartedAt = this.cluster.now();
    this.cluster.restart(resolved.process!);
    return this.heardAgain(resolved.process!, restartedAt);
  }

  /** When `name`'s agent, started after `since`, first knew the leader and could heartbeat. */
  async heardAgain(name: string, since: number): Promise<number> {
    while (this.cluster.now() < since + 30_000) {
      const line = this.cluster.firstLine(name, /following node|leader for term/, since);
      if (line) return line.at;
      await sleep(100);
    }
    this.problems.push(`${name} did not follow a leader within 30 s of starting`);
    return this.cluster.now();
  }

  /** A read-barrier `mill status` on some majority-side node, within PROGRESS_BOUND_MS of `start`. */
  async probeProgress(side: readonly string[], start: number): Promise<void> {
    for (let i = 0; this.cluster.now() < start + PROGRESS_BOUND_MS; i++) {
      const node = side[i % side.length]!;
      try {
        await this.cluster.status(node, 6000);
        const latency = this.cluster.now() - start;
        this.progressMs.push(latency);
        this.record(`progress: status on ${node} answered ${latency} ms after the fault`);
        return;
      } catch {
        await sleep(200);
      }
    }
    this.problems.push(
      `no progress within ${PROGRESS_BOUND_MS} ms although ${side.join(", ")} formed a majority`,
    );
  }

  async runStep(index: number): Promise<void> {
    const step = this.schedule.steps[index]!;
    const leader = this.views[0]?.nodes.leader;
    if (!leader) throw new Error("no leader before the step");
    const resolved = resolveFault(step.fault, this.members, leader);
    const spare = step.joinAfterMs === undefined ? undefined : this.spares[0];
    const start = this.cluster.now();
    this.record(
      `step ${index + 1}: ${describeFault(step.fault)} → on ${involvedNodes(resolved).join(", ")} (leader ${leader})`,
    );
    await this.inject(resolved);
    const joining = spare ? sleep(step.joinAfterMs!).then(() => this.join(spare)) : undefined;
    const side = majoritySide(resolved, this.members);
    if (side.length > 0) await this.probeProgress(side, start);
    else this.record("no majority is connected: no progress owed until the fault heals");
    const holdUntil = start + step.fault.holdMs;
    if (this.cluster.now() < holdUntil) await sleep(holdUntil - this.cluster.now());
    const end = await this.heal(resolved);
    this.record(`step ${index + 1}: healed`);
    for (const pair of unheard(resolved))
      this.windows.push({ ...pair, start, end, what: `step ${index + 1}` });
    await joining;
    await this.settle();
  }

  nodeDowns(): NodeDownSeen[] {
    return this.cluster.lines.flatMap((line) => {
      const match = /^\[(\S+)\] .*\bnode (\S+) is down$/.exec(line.text);
      return match ? [{ node: match[2]!, at: line.at, leader: match[1]! }] : [];
    });
  }
}

/** Rounds still running: a timed-out test leaves its round behind, so after() ends it. */
const running = new Set<FaultCluster>();

async function runRound(seed: number): Promise<RoundReport> {
  const schedule = makeSchedule(seed, { steps: STEPS, joiners: SPARE_HOSTS });
  process.stdout.write(`${formatSchedule(schedule)}\n`);
  const cluster = await FaultCluster.create(INITIAL_NODES + SPARE_HOSTS, HEALTH);
  running.add(cluster);
  const round = new Round(cluster, schedule);
  let stepsSurvived = 0;
  let failed = true;
  try {
    await cluster.init("node-1");
    round.members.push("node-1");
    round.record("node-1 initialised");
    for (const name of round.spares.slice(0, INITIAL_NODES - 1)) await round.join(name);
    if (!(await round.settle())) throw new Error("the cluster did not form");
    for (let index = 0; index < schedule.steps.length && round.problems.length === 0; index++) {
      await round.runStep(index);
      if (round.problems.length === 0) stepsSurvived++;
    }
    const downs = round.nodeDowns();
    const falseDowns = falseNodeDowns(
      downs,
      round.windows,
      HEARTBEAT_TIMEOUT_MS,
      RECOVERY_GRACE_MS,
    );
    // NodeDowns only a join explains: the node was registered but its agent not yet heard.
    const joinDowns =
      falseNodeDowns(
        downs,
        round.windows.filter((window) => window.what !== "joining"),
        HEARTBEAT_TIMEOUT_MS,
        RECOVERY_GRACE_MS,
      ).length - falseDowns.length;
    for (const down of falseDowns) {
      round.problems.push(
        `false NodeDown: ${down.leader} marked ${down.node} down at ${down.at} ms, though nothing kept ${down.node} from being heard by ${down.leader} in the ${HEARTBEAT_TIMEOUT_MS} + ${RECOVERY_GRACE_MS} ms before`,
      );
    }
    const lost = round.acked.filter((name) =>
      round.views.some(
        (view) => !view.nodes.nodes.some((node) => node.name === name && node.status !== "left"),
      ),
    );
    failed = round.problems.length > 0;
    return {
      seed,
      stepsSurvived,
      joinsAcked: round.acked.length,
      ackedLost: lost.length,
      nodeDowns: downs.length,
      falseNodeDowns: falseDowns.length,
      nodeDownsWhileJoining: joinDowns,
      slowestProgressMs: Math.max(0, ...round.progressMs),
      digestsAgreed: round.digestsCompared,
      problems: round.problems,
    };
  } catch (error) {
    round.problems.push(`the run stopped: ${(error as Error).message}`);
    throw new Error(`seed ${seed}: ${round.problems.join("; ")} (full report above)`);
  } finally {
    if (failed || VERBOSE) process.stdout.write(`${failureReport(round)}\n`);
    running.delete(cluster);
    await cluster.cleanup(failed || VERBOSE);
  }
}

function failureReport(round: Round): string {
  return [
    round.problems.length === 0
      ? "fault run passed"
      : `FAULT RUN FAILED: ${round.problems.join("; ")}`,
    formatSchedule(round.schedule),
    "what happened (ms since start):",
    ...round.events.map((event) => `  ${event}`),
    "fault windows:",
    ...round.windows.map(
      (w) =>
        `  ${w.node}${w.peer ? ` unheard by ${w.peer}` : ""} ${w.start}–${w.end} ms (${w.what})`,
    ),
    round.cluster.logTails(40),
    `files kept in ${round.cluster.root}`,
    `replay: ${replayCommand(round.schedule)}`,
  ].join("\n");
}

describe("faults on real processes in network namespaces", { skip: notRootReason }, () => {
  after(async () => {
    for (const cluster of running) await cluster.cleanup(true);
  });
  const reports: RoundReport[] = [];
  for (const seed of seedList()) {
    test(`seed ${seed}: ${STEPS} faults while ${SPARE_HOSTS} hosts join`, {
      timeout: 120_000 + STEPS * 60_000,
    }, async () => {
      const report = await runRound(seed);
      reports.push(report);
      process.stdout.write(`fault round ${JSON.stringify(report)}\n`);
      assert.deepEqual(report.problems, [], "see the failure report above");
      assert.equal(report.ackedLost, 0, "acknowledged joins lost");
      assert.equal(report.falseNodeDowns, 0, "false NodeDowns");
      assert.equal(report.stepsSurvived, STEPS);
    });
  }
  test("summary", () => {
    const total = (key: keyof RoundReport) =>
      reports.reduce((sum, r) => sum + (r[key] as number), 0);
    process.stdout.write(
      `fault summary: ${reports.filter((r) => r.problems.length === 0).length} schedules survived of ${seedList().length}, ${total("stepsSurvived")} fault steps, ` +
        `${total("joinsAcked")} acknowledged joins, ${total("ackedLost")} lost, ${total("nodeDowns")} NodeDowns ` +
        `(${total("nodeDownsWhileJoining")} of nodes still joining), ` +
        `${total("falseNodeDowns")} false, ${total("digestsAgreed")} digest comparisons\n`,
    );
    assert.ok(reports.length > 0);
  });
});
