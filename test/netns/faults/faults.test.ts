/**
 * Faults on real processes: a cluster of the built `dist/mill` in network namespaces with the
 * default WireGuard mesh goes through a seeded schedule of kill -9/restart, SIGSTOP/SIGCONT and
 * nftables partitions (leader isolated, follower isolated, one-way, ring) while spare hosts join,
 * a client runs and stops workloads and rotates the token, and an operator drains, undrains,
 * removes (live, or destroyed with --force) and makes nodes leave. After each fault heals,
 * check.ts must find nothing wrong and every acknowledged write and lifecycle command must hold;
 * a node that is out must have stopped and tidied up. At the end the nodes are stopped and their
 * committed Raft log read back: no committed NodeDown may have hit a node that was healthy
 * through its whole timeout window, every node stopped or killed for longer than the timeout
 * (while still a member) must have been marked down, and the last configuration must be the
 * members.
 *
 * CI runs a fixed list of seeds; FAULT_SEED, FAULT_ROUNDS and FAULT_STEPS run a longer soak
 * (see README.md). A failure prints the seed, the schedule, what happened and the replay command.
 */

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { Entry } from "../../../lib/raft/types.ts";
import { errorMessage } from "../../../lib/shared/errors.ts";
import type { ExecResult } from "../harness.ts";
import { notRootReason } from "../harness.ts";
import {
  type ClientWriteRecord,
  checkAgreement,
  checkConfiguration,
  checkDigests,
  committedLog,
  type FaultWindow,
  falseNodeDowns,
  lostRotation,
  lostWorkloadWrites,
  misplacedAllocations,
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
  type LifecycleStep,
  majoritySide,
  makeSchedule,
  pickMember,
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
/** A lifecycle command (drain, remove, leave) that has not returned by then is not acknowledged. */
const LIFECYCLE_TIMEOUT_MS = 40_000;
/** One attempt while the fault holds, then the operator's retries after it healed. */
const LIFECYCLE_ATTEMPTS = 4;
/** A removed node stops its agent and wireguard-go and removes its interface within this long. */
const TIDY_BOUND_MS = 15_000;
/** Removals wait for this many members, so that three remain. */
const MEMBERS_BEFORE_REMOVAL = 4;
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
  /** Lifecycle command attempts: acknowledged, not acknowledged, and acknowledged ones not in effect. */
  readonly lifecycleAcked: number;
  readonly lifecycleNotAcked: number;
  readonly lifecycleLost: number;
  /** What the acknowledged lifecycle commands were, e.g. "drain 2, leave 1". */
  readonly lifecycleDone: string;
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
  /** Every lifecycle command attempt, and whether it was acknowledged. */
  readonly lifecycle: { kind: string; node: string; acked: boolean }[] = [];
  /** Acknowledged lifecycle commands the cluster does not reflect. */
  lifecycleLost = 0;
  /** Members whose last acknowledged drain or undrain was a drain. */
  readonly drained = new Set<string>();
  /** Names removed or left for good (until the name joins again). */
  readonly departed = new Set<string>();
  /** Members being removed, and spare hosts being joined: no other command picks them. */
  readonly #busy = new Set<string>();
  /** Destroyed nodes: silent from `start` until their removal committed (read from the log). */
  readonly destroyed: { node: string; id: number; start: number; what: string }[] = [];
  /** Every node id ever listed, with its name (a name can come back with a new id). */
  readonly nodeNames = new Map<number, string>();

  constructor(
    readonly cluster: FaultCluster,
    readonly schedule: Schedule,
  ) {}

  record(text: string): void {
    this.events.push(`${this.cluster.now()} ms: ${text}`);
  }

  get spares(): string[] {
    return this.cluster.names.filter(
      (name) => !this.members.includes(name) && !this.#busy.has(name),
    );
  }

  /** Retries `mill join` through the members in turn, as an operator would, until it exits 0. */
  async join(name: string): Promise<void> {
    this.#busy.add(name);
    try {
      await this.#join(name);
    } finally {
      this.#busy.delete(name);
    }
  }

  async #join(name: string): Promise<void> {
    const start = this.cluster.now();
    const deadline = start + JOIN_DEADLINE_MS;
    for (let attempt = 0; this.cluster.now() < deadline; attempt++) {
      const via = this.members[attempt % this.members.length]!;
      const result = await this.cluster.joinOnce(name, via, 40_000);
      if (result.code === 0) {
        this.record(`join of ${name} via ${via} acknowledged (attempt ${attempt + 1})`);
        this.acked.push(name);
        this.members.push(name);
        this.departed.delete(name);
        // Until its agent runs and knows the leader, a registered node cannot send heartbeats.
        const end = await this.heardAgain(name, start);
        this.windows.push({ node: name, start, end, what: "joining" });
        return;
      }
      this.record(
        `join of ${name} via ${via} failed (${result.code}): ${result.stderr.trim().split("\n").at(-1)}`,
      );
      // A join that registered, then failed (say its token was rotated meanwhile), and could not
      // withdraw its registration says so and names the fix; the operator follows it.
      if (/could not withdraw its registration/.test(result.stdout + result.stderr)) {
        const removed = await this.viaMember(name, ["remove", name]);
        this.record(
          `remove ${name}, as the failed join advised: ${removed.code === 0 ? "acknowledged" : `failed (${removed.code}): ${removed.stderr.trim().split("\n").at(-1)}`}`,
        );
      }
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
      for (const view of views)
        for (const node of view.nodes.nodes) this.nodeNames.set(node.id, node.name);
      problems.push(...checkAgreement(views, this.members, this.drained, this.departed));
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
    this.lifecycleLost += problems.filter((problem) =>
      /whose removal was acknowledged|as (ready|draining) voter, not (draining|ready) voter$/.test(
        problem,
      ),
    ).length;
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
    const rows = await this.cluster.allocations(this.members[0]!);
    const present = new Set(rows.map((row) => row.name));
    const inForce = this.cluster.token(this.members[0]!);
    const problems = [
      ...lostWorkloadWrites(this.writes, present),
      ...lostRotation(this.writes, this.tokens, inForce),
    ];
    this.writesLost += problems.length;
    const empty = new Map([
      ...[...this.drained].map((name) => [name, "its drain was acknowledged"] as const),
      ...[...this.departed]
        .filter((name) => !this.members.includes(name))
        .map((name) => [name, "its removal was acknowledged"] as const),
    ]);
    const misplaced = misplacedAllocations(rows, empty);
    this.lifecycleLost += misplaced.length;
    problems.push(...misplaced);
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
    const via = this.#via();
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

  /** The next member in turn, other than `not` and those being removed, for a client command. */
  #via(not?: string): string {
    const candidates = this.members.filter((name) => name !== not && !this.#busy.has(name));
    return candidates[this.#clientTurn++ % candidates.length]!;
  }

  /**
   * One lifecycle command, resolved against the cluster as the fault holds: its target is any
   * member but the one the fault stopped (removals first let a spare join when only three remain). The first attempt runs during the fault; when that is not
   * acknowledged, the operator retries once the fault healed (until it is, or `done` shows the
   * earlier attempt took effect), so every outcome is known before the cluster is checked.
   */
  async lifecycleStep(
    life: LifecycleStep,
    resolved: ResolvedFault,
    healed: Promise<void>,
  ): Promise<void> {
    // Not the node the fault stopped: its restart belongs to the fault. Cut nodes are fair game.
    const free = () =>
      this.members.filter((name) => name !== resolved.process && !this.#busy.has(name));
    const skip = (why: string) => this.record(`lifecycle ${life.kind}: skipped, ${why}`);
    if (life.kind === "join") {
      const spare = this.spares[0];
      return spare ? this.join(spare) : skip("no spare host");
    }
    if (life.kind === "drain") {
      const node = pickMember(
        life.pick,
        free().filter((name) => !this.drained.has(name)),
      );
      if (node) await this.drain(node, healed);
      return node ? undefined : skip("no member to drain");
    }
    if (life.kind === "undrain") {
      const node = pickMember(
        life.pick,
        free().filter((name) => this.drained.has(name)),
      );
      if (!node) return skip("no drained member outside the fault");
      await this.undrain(node, healed);
      return;
    }
    const staying = () => this.members.filter((name) => !this.#busy.has(name)).length;
    const spare = this.spares[0];
    if (staying() < MEMBERS_BEFORE_REMOVAL && spare) {
      // Keep the cluster at a workable size: a fresh node (maybe a removed name) joins first.
      this.record(`lifecycle ${life.kind}: ${spare} joins first, so that three members remain`);
      await this.join(spare);
    }
    if (staying() < MEMBERS_BEFORE_REMOVAL) return skip(`${staying()} members: three must remain`);
    const leader = this.views[0]?.nodes.leader;
    if (life.kind === "remove-dead") {
      // Its death must leave a connected majority wherever the fault left one.
      const node = pickMember(
        life.pick,
        free().filter((name) => name !== leader && this.survivable(resolved, name)),
      );
      return node
        ? this.removeDead(node, healed)
        : skip("no member whose death leaves a connected majority");
    }
    const node = pickMember(life.pick, free());
    if (!node) return skip("no member the fault left running");
    if (life.kind === "remove") return this.removeLive(node, healed);
    return this.leave(node, healed);
  }

  /**
   * Whether a connected majority remains once `node` is dead too. Without one, neither its
   * NodeDown nor its removal could commit until the fault heals, and the checks of both assume
   * they can.
   */
  survivable(resolved: ResolvedFault, node: string): boolean {
    const others = this.members.filter((name) => name !== node);
    const isolated = others.flatMap((other) => [
      { from: other, to: node },
      { from: node, to: other },
    ]);
    return (
      majoritySide({ ...resolved, cuts: [...resolved.cuts, ...isolated] }, this.members).length > 0
    );
  }

  /** `mill ARGS` through another member, as an operator would. */
  viaMember(node: string, args: readonly string[]): Promise<ExecResult> {
    const via = this.#via(node);
    return this.cluster.mill(
      via,
      [...args, "--data-dir", this.cluster.dataDir(via)],
      LIFECYCLE_TIMEOUT_MS,
    );
  }

  /** Runs `attempt` until it is acknowledged (see lifecycleStep); "done" when `done` shows it. */
  async operate(
    kind: string,
    node: string,
    healed: Promise<void>,
    attempt: () => Promise<ExecResult>,
    done?: () => Promise<boolean>,
  ): Promise<"acked" | "done" | "failed"> {
    for (let n = 1; n <= LIFECYCLE_ATTEMPTS; n++) {
      if (n > 1) {
        await healed;
        await sleep(1000);
        if (done && (await done())) {
          this.record(`${kind} ${node}: an unacknowledged attempt took effect`);
          return "done";
        }
      }
      const result = await attempt();
      const acked = result.code === 0;
      this.lifecycle.push({ kind, node, acked });
      const outcome = acked
        ? "acknowledged"
        : `failed (${result.code}): ${result.stderr.trim().split("\n").at(-1)}`;
      this.record(`${kind} ${node} (attempt ${n}) ${outcome}`);
      if (acked) return "acked";
    }
    this.problems.push(`${kind} of ${node} was not acknowledged in ${LIFECYCLE_ATTEMPTS} attempts`);
    return "failed";
  }

  async drain(node: string, healed: Promise<void>): Promise<boolean> {
    await this.makeRoom(node, healed);
    const drained = await this.operate("drain", node, healed, () =>
      this.viaMember(node, ["drain", node]),
    );
    if (drained === "acked") this.drained.add(node);
    return drained === "acked";
  }

  /**
   * Before `node` is drained (or leaves, which drains it): its replicas need room elsewhere, so
   * as an operator would, undrain members until two that take work remain beside it.
   */
  async makeRoom(node: string, healed: Promise<void>): Promise<void> {
    const open = () =>
      this.members.filter(
        (name) => name !== node && !this.drained.has(name) && !this.#busy.has(name),
      );
    for (const full of [...this.drained].filter((name) => name !== node)) {
      if (open().length >= 2) return;
      this.record(`${node}'s replicas need room: ${full} is undrained first`);
      if ((await this.undrain(full, healed)) !== "acked") return;
    }
  }

  async undrain(node: string, healed: Promise<void>): Promise<"acked" | "done" | "failed"> {
    const undone = await this.operate("undrain", node, healed, () =>
      this.viaMember(node, ["undrain", node]),
    );
    if (undone === "acked") this.drained.delete(node);
    return undone;
  }

  /** Whether a member other than `node` answers with a list without it. */
  async unlisted(node: string): Promise<boolean> {
    try {
      const view = await this.cluster.view(this.#via(node));
      return !view.nodes.nodes.some((entry) => entry.name === node);
    } catch {
      return false;
    }
  }

  /** `mill drain`, then a plain `mill remove`: the node stops itself and tidies up. */
  async removeLive(node: string, healed: Promise<void>): Promise<void> {
    this.#busy.add(node);
    try {
      if (!this.drained.has(node) && !(await this.drain(node, healed))) return;
      const pids = this.processes(node);
      const removed = await this.operate(
        "remove",
        node,
        healed,
        () => this.viaMember(node, ["remove", node]),
        () => this.unlisted(node),
      );
      if (removed !== "failed") await this.depart(node, "remove", pids);
    } finally {
      this.#busy.delete(node);
    }
  }

  /** `mill leave` on the node itself: it drains, removes itself, stops and clears its data dir. */
  async leave(node: string, healed: Promise<void>): Promise<void> {
    this.#busy.add(node);
    try {
      await this.makeRoom(node, healed);
      const pids = this.processes(node);
      const dataDir = this.cluster.dataDir(node);
      const left = await this.operate(
        "leave",
        node,
        healed,
        () => this.cluster.mill(node, ["leave", "--data-dir", dataDir], LIFECYCLE_TIMEOUT_MS),
        async () => !existsSync(dataDir) && (await this.unlisted(node)),
      );
      if (left === "acked" && existsSync(dataDir)) {
        this.lifecycleLost++;
        this.problems.push(`mill leave on ${node} was acknowledged, yet ${dataDir} is still there`);
      }
      if (left !== "failed") await this.depart(node, "leave", pids);
    } finally {
      this.#busy.delete(node);
    }
  }

  /** The host dies for good (every process, the interface, the files), then `mill remove --force`. */
  async removeDead(node: string, healed: Promise<void>): Promise<void> {
    this.#busy.add(node);
    try {
      const id = await this.idOf(node);
      const start = this.cluster.now();
      await this.cluster.destroy(node);
      this.record(`${node} (id ${id}) destroyed`);
      this.destroyed.push({ node, id, start, what: `${node} destroyed` });
      const removed = await this.operate(
        "remove --force",
        node,
        healed,
        () => this.viaMember(node, ["remove", node, "--force"]),
        () => this.unlisted(node),
      );
      this.windows.push({ node, start, end: this.cluster.now(), what: "destroyed" });
      if (removed !== "failed") await this.depart(node, "remove --force", {});
    } finally {
      this.#busy.delete(node);
    }
  }

  /** The id `node` has now, as the first other member that answers lists it. */
  async idOf(node: string): Promise<number> {
    const others = this.members.filter((name) => name !== node && !this.#busy.has(name));
    for (const other of others) {
      const view = await this.cluster.view(other).catch(() => undefined);
      const id = view?.nodes.nodes.find((entry) => entry.name === node)?.id;
      if (id !== undefined) {
        this.nodeNames.set(id, node);
        return id;
      }
    }
    throw new Error(`no member of ${others.join(", ")} answered with ${node}'s id`);
  }

  /** The node's agent and wireguard-go, while it runs. */
  processes(node: string): { agent?: number; wireguard?: number } {
    const wireguard = this.cluster.wireguardPid(node);
    return {
      agent: this.cluster.pid(node),
      ...(wireguard === undefined ? {} : { wireguard }),
    };
  }

  /**
   * The node is out: no longer a member, its agent and wireguard-go gone and its interface
   * removed (within TIDY_BOUND_MS), then its host is cleared so that the name can join again.
   */
  async depart(
    node: string,
    how: string,
    pids: { agent?: number; wireguard?: number },
  ): Promise<void> {
    this.members.splice(this.members.indexOf(node), 1);
    this.drained.delete(node);
    this.departed.add(node);
    const deadline = this.cluster.now() + TIDY_BOUND_MS;
    const left = async () => [
      ...Object.entries(pids)
        .filter(([, pid]) => pid !== undefined && this.cluster.alive(pid))
        .map(([what, pid]) => `its ${what} (pid ${pid}) still runs`),
      ...((await this.cluster.hasInterface(node))
        ? [`its interface ${this.cluster.iface(node)} is still there`]
        : []),
    ];
    let untidy = await left();
    while (untidy.length > 0 && this.cluster.now() < deadline) {
      await sleep(200);
      untidy = await left();
    }
    if (untidy.length > 0) {
      this.lifecycleLost++;
      this.problems.push(`${node} was out (${how}), yet ${untidy.join(", ")}`);
      return; // Its host stays as it is, for the failure report.
    }
    this.record(`${node} is out (${how})`);
    await this.cluster.clearHost(node);
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
    // Reserved now, so that a lifecycle join during the step picks another host.
    if (spare) this.#busy.add(spare);
    const start = this.cluster.now();
    this.record(
      `step ${index + 1}: ${describeFault(step.fault)} → on ${involvedNodes(resolved).join(", ")} (leader ${leader})`,
    );
    await this.inject(resolved);
    const joining = spare ? sleep(step.joinAfterMs!).then(() => this.join(spare)) : undefined;
    const writing = this.clientWrites(step.writes, start);
    let markHealed = () => {};
    const healed = new Promise<void>((resolve) => {
      markHealed = resolve;
    });
    const life = step.lifecycle;
    const lifecycle = life
      ? sleep(life.afterMs)
          .then(() => this.lifecycleStep(life, resolved, healed))
          .catch((error) => {
            this.problems.push(`lifecycle ${life.kind} stopped: ${errorMessage(error)}`);
          })
      : undefined;
    const side = majoritySide(resolved, this.members);
    if (side.length > 0) await this.probeProgress(side, start);
    else this.record("no majority is connected: no progress owed until the fault heals");
    const holdUntil = start + step.fault.holdMs;
    if (this.cluster.now() < holdUntil) await sleep(holdUntil - this.cluster.now());
    const end = await this.heal(resolved);
    markHealed();
    this.record(`step ${index + 1}: healed`);
    for (const pair of unheard(resolved))
      this.windows.push({ ...pair, start, end, what: `step ${index + 1}` });
    if (resolved.process)
      this.stopped.push({ node: resolved.process, start, end, what: `step ${index + 1}` });
    await joining;
    await writing;
    await lifecycle;
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
  /** The committed entries of the Raft logs the stopped members left (see check.ts). */
  async committedEntries(): Promise<Entry[]> {
    const logs = new Map<string, StoredLog>();
    for (const name of this.members) logs.set(name, await this.cluster.storedLog(name));
    const { entries, problems } = committedLog(logs);
    this.problems.push(...problems);
    return entries;
  }

  /** The committed NodeDowns, each attributed to the node that led its term (when known). */
  committedNodeDowns(entries: readonly Entry[]): NodeDownSeen[] {
    const leaders = new Map(this.leaderships().map((l) => [l.term, l.node]));
    return statusChanges(entries)
      .filter((change) => change.type === "NodeDown")
      .map((change) => {
        const leader = leaders.get(change.term);
        return {
          node: this.nodeNames.get(change.id) ?? `id ${change.id}`,
          at: change.at - this.cluster.startedAt,
          ...(leader === undefined ? {} : { leader }),
        };
      });
  }

  /**
   * A destroyed node was silent from its death until its NodeRemove committed: a stop like a
   * kill's, for the owed NodeDowns. Its absence after the removal owes nothing.
   */
  destroyedUntilRemoved(entries: readonly Entry[]): FaultWindow[] {
    const removals = statusChanges(entries).filter((change) => change.type === "NodeRemove");
    return this.destroyed.flatMap((dead) => {
      const removal = removals.find((change) => change.id === dead.id);
      if (removal) return [{ ...dead, end: removal.at - this.cluster.startedAt }];
      this.lifecycleLost++;
      this.problems.push(`the removal of ${dead.node} (id ${dead.id}) is not in the committed log`);
      return [];
    });
  }

  /** The configuration the committed log ends with holds exactly the members, as voters. */
  checkConfiguration(entries: readonly Entry[]): void {
    const ids = this.members.map(
      (name) => this.views[0]?.nodes.nodes.find((node) => node.name === name)?.id ?? -1,
    );
    const problems = checkConfiguration(entries, ids);
    this.lifecycleLost += problems.length;
    this.problems.push(...problems);
  }

  /**
   * Every kill or pause that left its node silent for NODE_DOWN_OWED_AFTER_MS after the leader
   * of the time took office owes a NodeDown before the node was heard again.
   */
  owedNodeDowns(stops: readonly FaultWindow[]): OwedNodeDown[] {
    const leaderships = this.leaderships();
    return stops.flatMap((stop) => {
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
    const entries = await round.committedEntries();
    if (round.views.length > 0) round.checkConfiguration(entries);
    const downs = round.committedNodeDowns(entries);
    const owed = round.owedNodeDowns([...round.stopped, ...round.destroyedUntilRemoved(entries)]);
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
    // Every acknowledged join whose node was not removed since is a member, and listed.
    const lost = round.members.filter((name) =>
      round.views.some(
        (view) => !view.nodes.nodes.some((node) => node.name === name && node.status !== "left"),
      ),
    );
    const done = new Map<string, number>();
    for (const { kind, acked } of round.lifecycle)
      if (acked) done.set(kind, (done.get(kind) ?? 0) + 1);
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
      lifecycleAcked: round.lifecycle.filter((attempt) => attempt.acked).length,
      lifecycleNotAcked: round.lifecycle.filter((attempt) => !attempt.acked).length,
      lifecycleLost: round.lifecycleLost,
      lifecycleDone: [...done].map(([kind, count]) => `${kind} ${count}`).join(", "),
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
      timeout: 120_000 + STEPS * 90_000,
    }, async () => {
      const report = await runRound(seed);
      reports.push(report);
      process.stdout.write(`fault round ${JSON.stringify(report)}\n`);
      assert.deepEqual(report.problems, [], "see the failure report above");
      assert.equal(report.ackedLost, 0, "acknowledged joins lost");
      assert.equal(report.writesLost, 0, "acknowledged client writes lost");
      assert.equal(report.lifecycleLost, 0, "acknowledged lifecycle commands not in effect");
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
        `${total("lifecycleAcked")} acknowledged lifecycle commands (${total("lifecycleNotAcked")} not acknowledged), ${total("lifecycleLost")} not in effect, ` +
        `${total("nodeDowns")} committed NodeDowns (${total("nodeDownsLogged")} logged; ${total("nodeDownsWhileJoining")} of nodes still joining), ` +
        `${total("falseNodeDowns")} false, ${total("nodeDownsOwed")} owed by a kill or pause past the timeout, ${total("nodeDownsMissing")} missing, ` +
        `${total("digestsAgreed")} digest comparisons\n`,
    );
    assert.ok(reports.length > 0);
  });
});
