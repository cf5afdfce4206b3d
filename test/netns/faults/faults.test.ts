/**
 * Faults on real processes: a cluster of the built `dist/mill` in network namespaces with the
 * default WireGuard mesh goes through a seeded schedule of kill -9/restart, SIGSTOP/SIGCONT and
 * nftables partitions (leader isolated, follower isolated, one-way, ring) while spare hosts join
 * and a client runs and stops workloads and rotates the token. After each fault heals, check.ts
 * must find nothing wrong and every acknowledged write must hold. At the end the nodes are
 * stopped and their committed Raft log read back: no committed NodeDown may have hit a node that
 * was healthy through its whole timeout window, and every node stopped or killed for longer than
 * the timeout must have been marked down.
 *
 * CI runs a fixed list of seeds; FAULT_SEED, FAULT_ROUNDS and FAULT_STEPS run a longer soak
 * (see README.md). A failure prints the seed, the schedule, what happened and the replay command.
 */

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { errorMessage } from "../../../lib/shared/errors.ts";
import { notRootReason } from "../harness.ts";
import {
  type ClientWriteRecord,
  checkAgreement,
  checkDigests,
  committedLog,
  type FaultWindow,
  falseNodeDowns,
  lostRotation,
  lostWorkloadWrites,
  missingNodeDowns,
  type NodeDownSeen,
  type NodeView,
  type OwedNodeDown,
  type StoredLog,
  statusChanges,
} from "./check.ts";
import { FaultCluster } from "./cluster.ts";
import {
  type ClientWrite,
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
/**
 * A node silent this much longer than the timeout, counted from when the current leader took
 * office (its watchdog gives everyone a fresh window), must have been marked down by then.
 */
const NODE_DOWN_OWED_AFTER_MS = HEARTBEAT_TIMEOUT_MS + 1000;
/** A client command that has not returned by then counts as not acknowledged. */
const CLIENT_TIMEOUT_MS = 40_000;
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
  readonly writesAcked: number;
  readonly writesNotAcked: number;
  readonly writesLost: number;
  /** NodeDowns in the committed log, and the leaders' log lines saying so. */
  readonly nodeDowns: number;
  readonly nodeDownsLogged: number;
  readonly falseNodeDowns: number;
  readonly nodeDownsWhileJoining: number;
  readonly nodeDownsOwed: number;
  readonly nodeDownsMissing: number;
  readonly slowestProgressMs: number;
  /** Times every member's state digest was compared and found equal. */
  readonly digestsAgreed: number;
  readonly problems: readonly string[];
}

class Round {
  readonly events: string[] = [];
  readonly windows: FaultWindow[] = [];
  /** Nodes killed or paused: silent from `start` until they could be heard again at `end`. */
  readonly stopped: FaultWindow[] = [];
  readonly members: string[] = [];
  readonly acked: string[] = [];
  readonly writes: ClientWriteRecord[] = [];
  /** Every token seen: the initial one, each rotation's, any that came into force unacknowledged. */
  readonly tokens: string[] = [];
  writesLost = 0;
  readonly problems: string[] = [];
  readonly progressMs: number[] = [];
  digestsCompared = 0;
  views: NodeView[] = [];
  #clientTurn = 0;

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
        answer.status === "rejected" ? [errorMessage(answer.reason)] : [],
      );
      problems.push(...checkAgreement(views, this.members));
      if (problems.length === 0) problems.push(...this.tokenAgreement());
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

  /** Every member saved the same token (each fetches a rotated one from its peers). */
  tokenAgreement(): string[] {
    const saved = this.members.map((name) => [name, this.cluster.token(name)] as const);
    const label = (token: string) => {
      const index = this.tokens.indexOf(token);
      return index === -1 ? "a token no command printed" : `token ${index}`;
    };
    return new Set(saved.map(([, token]) => token)).size > 1
      ? [
          `the saved tokens differ: ${saved.map(([name, token]) => `${name} has ${label(token)}`).join(", ")}`,
        ]
      : [];
  }

  /**
   * After settling: every acknowledged client write holds in the committed state. The token all
   * members saved is accepted by each, and every older token is refused by each.
   */
  async checkWrites(): Promise<void> {
    const present = await this.cluster.workloadNames(this.members[0]!);
    const inForce = this.cluster.token(this.members[0]!);
    const problems = [
      ...lostWorkloadWrites(this.writes, present),
      ...lostRotation(this.writes, this.tokens, inForce),
    ];
    this.writesLost += problems.length;
    for (const name of this.members) {
      if (!(await this.cluster.accepts(name, inForce)))
        problems.push(`${name} refuses the token every member saved`);
      for (const [index, old] of this.tokens.entries())
        if (old !== inForce && (await this.cluster.accepts(name, old)))
          problems.push(`${name} still accepts token ${index}, which a rotation replaced`);
    }
    if (!this.tokens.includes(inForce)) this.tokens.push(inForce);
    this.problems.push(...problems);
  }

  /** One client command through the next member in turn; one attempt, as a script would. */
  async clientWrite(write: ClientWrite): Promise<void> {
    const via = this.members[this.#clientTurn++ % this.members.length]!;
    const dataDir = ["--data-dir", this.cluster.dataDir(via)];
    const workloadWrites = this.writes.filter((w) => w.kind !== "rotate");
    const running = [...new Set(workloadWrites.map((w) => w.subject))].filter((name) => {
      const last = workloadWrites.findLast((w) => w.subject === name);
      return last?.kind === "run" && last.acked;
    });
    const kind = write.kind === "stop" && running.length === 0 ? "run" : write.kind;
    const name =
      kind === "stop" ? running[0]! : `w${this.writes.filter((w) => w.kind === "run").length + 1}`;
    const args =
      kind === "rotate"
        ? ["token", "rotate", ...dataDir]
        : kind === "stop"
          ? ["stop", name, ...dataDir]
          : ["run", name, "--cpu", "0.05", "--memory", "16M", ...dataDir, "--", "sleep", "100000"];
    const result = await this.cluster.mill(via, args, CLIENT_TIMEOUT_MS);
    const acked = result.code === 0;
    const printed = /Token: (mill_t_\S+)/.exec(result.stdout)?.[1];
    if (kind === "rotate" && acked) {
      if (!printed) throw new Error(`mill token rotate exited 0 without a token: ${result.stdout}`);
      this.tokens.push(printed);
    }
    this.writes.push({ kind, subject: kind === "rotate" ? (printed ?? "") : name, acked });
    const outcome = acked
      ? "acknowledged"
      : `failed (${result.code}): ${result.stderr.trim().split("\n").at(-1)}`;
    this.record(`${kind}${kind === "rotate" ? "" : ` ${name}`} via ${via} ${outcome}`);
  }

  /** The step's client writes, each at its time after the fault started. */
  async clientWrites(writes: readonly ClientWrite[], start: number): Promise<void> {
    for (const write of writes) {
      const wait = start + write.afterMs - this.cluster.now();
      if (wait > 0) await sleep(wait);
      await this.clientWrite(write);
    }
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
    const writing = this.clientWrites(step.writes, start);
    const side = majoritySide(resolved, this.members);
    if (side.length > 0) await this.probeProgress(side, start);
    else this.record("no majority is connected: no progress owed until the fault heals");
    const holdUntil = start + step.fault.holdMs;
    if (this.cluster.now() < holdUntil) await sleep(holdUntil - this.cluster.now());
    const end = await this.heal(resolved);
    this.record(`step ${index + 1}: healed`);
    for (const pair of unheard(resolved))
      this.windows.push({ ...pair, start, end, what: `step ${index + 1}` });
    if (resolved.process)
      this.stopped.push({ node: resolved.process, start, end, what: `step ${index + 1}` });
    await joining;
    await writing;
    if (await this.settle()) await this.checkWrites();
  }

  /** The leaders' log lines announcing a NodeDown (counted beside the committed ones). */
  loggedNodeDowns(): number {
    return this.cluster.lines.filter((line) => /^\[\S+\] .*\bnode \S+ is down$/.test(line.text))
      .length;
  }

  /** When each node said it became leader of a term, from the log lines. */
  leaderships(): { node: string; term: number; at: number }[] {
    return this.cluster.lines.flatMap((line) => {
      const match = /^\[(\S+)\] .*\bleader for term (\d+)$/.exec(line.text);
      return match ? [{ node: match[1]!, term: Number(match[2]), at: line.at }] : [];
    });
  }

  /**
   * The NodeDowns committed in the Raft log the stopped nodes left, on the run's clock, each
   * attributed to the node that led its term (when a log line says which).
   */
  async committedNodeDowns(): Promise<NodeDownSeen[]> {
    const logs = new Map<string, StoredLog>();
    for (const name of this.members) logs.set(name, await this.cluster.storedLog(name));
    const { entries, problems } = committedLog(logs);
    this.problems.push(...problems);
    const names = new Map(this.views[0]?.nodes.nodes.map((node) => [node.id, node.name]));
    const leaders = new Map(this.leaderships().map((l) => [l.term, l.node]));
    return statusChanges(entries)
      .filter((change) => change.type === "NodeDown")
      .map((change) => {
        const leader = leaders.get(change.term);
        return {
          node: names.get(change.id) ?? `id ${change.id}`,
          at: change.at - this.cluster.startedAt,
          ...(leader === undefined ? {} : { leader }),
        };
      });
  }

  /**
   * Every kill or pause that left its node silent for NODE_DOWN_OWED_AFTER_MS after the leader
   * of the time took office owes a NodeDown before the node was heard again.
   */
  owedNodeDowns(): OwedNodeDown[] {
    const leaderships = this.leaderships();
    return this.stopped.flatMap((stop) => {
      const tookOffice = leaderships
        .filter((l) => l.node !== stop.node && l.at >= stop.start && l.at <= stop.end)
        .map((l) => l.at);
      const from = Math.max(stop.start, ...tookOffice);
      return stop.end - from >= NODE_DOWN_OWED_AFTER_MS
        ? [{ node: stop.node, from, until: stop.end + RECOVERY_GRACE_MS, what: stop.what }]
        : [];
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
    round.tokens.push(await cluster.init("node-1"));
    round.members.push("node-1");
    round.record("node-1 initialised");
    for (const name of round.spares.slice(0, INITIAL_NODES - 1)) await round.join(name);
    if (!(await round.settle())) throw new Error("the cluster did not form");
    for (let index = 0; index < schedule.steps.length && round.problems.length === 0; index++) {
      await round.runStep(index);
      if (round.problems.length === 0) stepsSurvived++;
    }
    await cluster.stopNodes();
    const downs = await round.committedNodeDowns();
    const owed = round.owedNodeDowns();
    const missing = missingNodeDowns(owed, downs);
    for (const miss of missing)
      round.problems.push(
        `no NodeDown of ${miss.node} committed between ${miss.from} and ${miss.until} ms, though it was stopped (${miss.what}) past the timeout`,
      );
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
        `false NodeDown: ${down.leader ?? "a leader"} marked ${down.node} down at ${down.at} ms, though nothing kept ${down.node} from being heard by it in the ${HEARTBEAT_TIMEOUT_MS} + ${RECOVERY_GRACE_MS} ms before`,
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
      writesAcked: round.writes.filter((w) => w.acked).length,
      writesNotAcked: round.writes.filter((w) => !w.acked).length,
      writesLost: round.writesLost,
      nodeDowns: downs.length,
      nodeDownsLogged: round.loggedNodeDowns(),
      falseNodeDowns: falseDowns.length,
      nodeDownsWhileJoining: joinDowns,
      nodeDownsOwed: owed.length,
      nodeDownsMissing: missing.length,
      slowestProgressMs: Math.max(0, ...round.progressMs),
      digestsAgreed: round.digestsCompared,
      problems: round.problems,
    };
  } catch (error) {
    round.problems.push(`the run stopped: ${errorMessage(error)}`);
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
      assert.equal(report.writesLost, 0, "acknowledged client writes lost");
      assert.equal(report.falseNodeDowns, 0, "false NodeDowns");
      assert.equal(report.nodeDownsMissing, 0, "NodeDowns owed but never committed");
      assert.equal(report.stepsSurvived, STEPS);
    });
  }
  test("summary", () => {
    const total = (key: keyof RoundReport) =>
      reports.reduce((sum, r) => sum + (r[key] as number), 0);
    process.stdout.write(
      `fault summary: ${reports.filter((r) => r.problems.length === 0).length} schedules survived of ${seedList().length}, ${total("stepsSurvived")} fault steps, ` +
        `${total("joinsAcked")} acknowledged joins, ${total("ackedLost")} lost, ` +
        `${total("writesAcked")} acknowledged client writes (${total("writesNotAcked")} not acknowledged), ${total("writesLost")} lost, ` +
        `${total("nodeDowns")} committed NodeDowns (${total("nodeDownsLogged")} logged; ${total("nodeDownsWhileJoining")} of nodes still joining), ` +
        `${total("falseNodeDowns")} false, ${total("nodeDownsOwed")} owed by a kill or pause past the timeout, ${total("nodeDownsMissing")} missing, ` +
        `${total("digestsAgreed")} digest comparisons\n`,
    );
    assert.ok(reports.length > 0);
  });
});
