/**
 * A node's side of workloads: runs the allocations the cluster assigns to this node (through the
 * Supervisor), reports their status to the leader and, on the leader, commits the scheduler's
 * reconcile steps. Owns: when to reconcile, report and plan. Must not touch: placement
 * (lib/workloads/scheduler.ts), processes (lib/workloads/supervisor.ts and the files behind it), HTTP routes, Raft.
 *
 * Decisions recorded here:
 * - After a start, nothing is started or stopped until this node has caught up with the leader
 *   (a read barrier). A node the cluster marked down therefore stops its stale processes before
 *   it takes new work, and never restarts an allocation that was moved elsewhere meanwhile. If no
 *   leader answers within `catchUpMs`, the node runs what its local state says, unless Raft is
 *   rebuilding a log it lost (its state is empty or partial, not the cluster's): then it waits.
 * - After that, every applied change of the workload slice leads to one reconcile; bursts
 *   coalesce into the newest state.
 * - Without a leader the node keeps its processes running (the cluster decides), and says so.
 * - A status report is retried every tick until the committed state shows it, the allocation is
 *   no longer a live one of this node, or the leader refuses it.
 * - The leader plans once per tick inside serialize(), like the API's workload writes, and only
 *   after a read barrier in its term, so its state holds every earlier leader's commits.
 */

import type { AllocationStatusRequest } from "../api/wire.ts";
import type { ApplyResult, Commit } from "../cluster/commands.ts";
import type { ClusterState, NodeRecord } from "../cluster/state.ts";
import { NONE, type NodeId, type RaftNode, type Role } from "../raft/types.ts";
import { errorMessage } from "../shared/errors.ts";
import type { DebugLog } from "../shared/log.ts";
import { SerialQueue } from "../shared/serial.ts";
import {
  AllocationDirs,
  type LogChunk,
  type LogRequest,
  logQuery,
} from "../workloads/allocation-dirs.ts";
import type { WorkloadCommand } from "../workloads/commands.ts";
import { planReconcile } from "../workloads/scheduler.ts";
import { desiredForNode, isLive, type WorkloadState } from "../workloads/state.ts";
import { type StatusUpdate, Supervisor, type SupervisorOptions } from "../workloads/supervisor.ts";
import { callMember, type MemberIdentity, postToMember } from "./member-client.ts";

export interface NodeWorkloadsOptions {
  readonly dataDir: string;
  readonly self: NodeId;
  readonly raft: Pick<RaftNode, "status" | "readBarrier" | "onLeaderChange">;
  /** Commits through this node's Raft (as the leader's reports and reconcile steps). */
  readonly commit: Commit;
  /** The local ClusterFsm's current state. */
  state(): ClusterState;
  /** Sends a report to the leader's internal API; resolves with the HTTP status. */
  report(leader: NodeRecord, request: AllocationStatusRequest): Promise<number>;
  /** How long to wait for the leader after a start before running from the local state. */
  readonly catchUpMs: number;
  readonly log: DebugLog;
  readonly now?: () => number;
  /** Process host, clock and limits for the supervisor (tests pass fakes). */
  readonly supervisor?: Pick<SupervisorOptions, "host" | "clock" | "cgroupRoot" | "stopGraceMs">;
}

export class NodeWorkloads {
  readonly #options: NodeWorkloadsOptions;
  readonly #supervisor: Supervisor;
  readonly #now: () => number;
  readonly #startedAt: number;
  readonly #unsubscribe: () => void;
  #caughtUp = false;
  #catchingUp = false;
  /** The workload slice the supervisor was last told to run. */
  #reconciled: WorkloadState | undefined;
  #reconciling = false;
  #reconcileAgain = false;
  /** The newest unsent report per allocation. */
  readonly #reports = new Map<number, StatusUpdate>();
  #reporting = false;
  readonly #plans = new SerialQueue();
  #planning = false;
  #barrierTerm = 0;
  #lostContact = false;
  #closed = false;

  constructor(options: NodeWorkloadsOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#startedAt = this.#now();
    this.#supervisor = new Supervisor({
      dataDir: options.dataDir,
      logger: options.log,
      onStatus: (update) => {
        this.#reports.set(update.id, update);
        this.#sendReports();
      },
      ...options.supervisor,
    });
    this.#unsubscribe = options.raft.onLeaderChange((leader, role) =>
      this.#leaderChanged(leader, role),
    );
    this.#catchUp();
  }

  /** Call after every local apply or restore: the supervisor follows the workload slice. */
  changed(): void {
    if (this.#caughtUp) this.#reconcile();
  }

  /** Call every watchdog tick: catch-up retries, report retries and, on the leader, planning. */
  tick(): void {
    if (this.#closed) return;
    if (this.#caughtUp) this.#reconcile();
    else this.#catchUp();
    this.#sendReports();
    if (this.#options.raft.status().role === "leader") void this.#plan();
  }

  /** Runs `task` after every earlier one has finished (see ApiDeps.serializePlans). */
  serialize<T>(task: () => Promise<T>): Promise<T> {
    return this.#plans.run(task);
  }

  /** Allocation ids the supervisor runs or restarts. */
  running(): number[] {
    return this.#supervisor.running();
  }

  /** Stops every allocation process (waiting until each is gone), then closes: a node leaving. */
  async stopAll(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe();
    await this.#supervisor.reconcile([]);
    this.#supervisor.close();
  }

  /** Stops timers and leaves every process running for the next agent to adopt. */
  close(): void {
    this.#closed = true;
    this.#unsubscribe();
    this.#supervisor.close();
  }

  #catchUp(): void {
    if (this.#catchingUp || this.#closed) return;
    this.#catchingUp = true;
    this.#options.raft
      .readBarrier()
      .then(
        () => this.#start(),
        () => {
          if (this.#now() - this.#startedAt < this.#options.catchUpMs) return;
          if (this.#options.raft.status().recovering) return;
          this.#options.log.warn(
            `no leader answered within ${this.#options.catchUpMs} ms: running allocations from the local state until one does`,
          );
          this.#start();
        },
      )
      .finally(() => {
        this.#catchingUp = false;
      });
  }

  #start(): void {
    if (this.#caughtUp || this.#closed) return;
    this.#caughtUp = true;
    this.#reconcile();
  }

  #reconcile(): void {
    if (this.#reconciling) {
      this.#reconcileAgain = true;
      return;
    }
    this.#reconciling = true;
    void (async () => {
      do {
        this.#reconcileAgain = false;
        const workloads = this.#options.state().workloads;
        if (workloads === this.#reconciled) continue;
        this.#reconciled = workloads;
        // The supervisor logs its own failures; forgetting the state retries on the next tick.
        await this.#supervisor
          .reconcile(desiredForNode(workloads, this.#options.self))
          .catch(() => {
            this.#reconciled = undefined;
          });
      } while (this.#reconcileAgain && !this.#closed);
      this.#reconciling = false;
    })();
  }

  #sendReports(): void {
    if (this.#reporting || this.#reports.size === 0 || this.#closed) return;
    this.#reporting = true;
    void (async () => {
      let delivered = true;
      while (delivered && this.#reports.size > 0) {
        for (const update of [...this.#reports.values()]) {
          if (!this.#settled(update)) delivered = await this.#send(update);
          if (!delivered) break;
          if (this.#reports.get(update.id) === update) this.#reports.delete(update.id);
        }
      }
      this.#reporting = false;
    })();
  }

  /** Whether the committed state already shows `update`, or will never take it. */
  #settled(update: StatusUpdate): boolean {
    const allocation = this.#options.state().workloads.allocations.get(update.id);
    return (
      !allocation ||
      allocation.node !== this.#options.self ||
      !isLive(allocation) ||
      (allocation.status === update.status && allocation.restarts >= update.restarts)
    );
  }

  /** Delivers one report; false when no leader took it (retried on a later tick). */
  async #send(update: StatusUpdate): Promise<boolean> {
    const { raft, commit, self } = this.#options;
    const status = raft.status();
    try {
      if (status.role === "leader") {
        await commit({ type: "AllocationStatus", node: self, at: this.#now(), ...update });
        return true;
      }
      const leader =
        status.leader === NONE ? undefined : this.#options.state().nodes.get(status.leader);
      if (!leader) return false;
      const code = await this.#options.report(leader, update);
      // 400 and 409 are final: the leader will never commit this report.
      return code === 200 || code === 400 || code === 409;
    } catch (error) {
      this.#options.log.debug(`allocation ${update.id} report: ${errorMessage(error)}`);
      return false;
    }
  }

  async #plan(): Promise<void> {
    const { raft, commit, log } = this.#options;
    if (this.#planning || !this.#options.state().cluster) return;
    this.#planning = true;
    try {
      const { term } = raft.status();
      if (this.#barrierTerm !== term) {
        await raft.readBarrier();
        this.#barrierTerm = term;
      }
      await this.serialize(async () => {
        const { workloads, nodes } = this.#options.state();
        for (const command of planReconcile(workloads, nodes, this.#now())) {
          if (raft.status().role !== "leader") return;
          const result = await commit(command);
          if (result.ok && result.changed) log.info(describe(command, result, nodes));
        }
      });
    } catch (error) {
      log.debug(`workload reconcile: ${errorMessage(error)}`);
    } finally {
      this.#planning = false;
    }
  }

  #leaderChanged(leader: NodeId, role: Role): void {
    if (leader === NONE && role !== "leader") {
      const running = this.#supervisor.running().length;
      if (this.#lostContact || running === 0) return;
      this.#lostContact = true;
      this.#options.log.warn(
        `lost contact with the leader: keeping ${running} allocation process(es) running until the cluster decides`,
      );
    } else if (leader !== NONE && this.#lostContact) {
      this.#lostContact = false;
      this.#options.log.info(`in contact with leader node ${leader} again`);
    }
  }
}

function describe(
  command: WorkloadCommand,
  result: Extract<ApplyResult, { ok: true }>,
  nodes: ClusterState["nodes"],
): string {
  const placed = result.placed?.length ?? 0;
  switch (command.type) {
    case "AllocationsLost":
      return `allocations on ${nodes.get(command.node)?.name ?? `node ${command.node}`} lost; ${placed} replacement(s) placed`;
    case "WorkloadStep":
      return `workload ${command.workload}: ${command.stop.length} stopped, ${placed} placed`;
    default:
      return `workload command ${command.type} committed`;
  }
}

/** Reports to the leader's internal API with this node's member secret. */
export function reportToLeader(
  member: MemberIdentity,
  timeoutMs: number,
): NodeWorkloadsOptions["report"] {
  return async (leader, request) =>
    (await postToMember(member, leader, "/v1/internal/allocation-status", request, timeoutMs))
      .status;
}

/**
 * Reads allocation output for the API: from this node's data dir when `node` is this node, else
 * from `node`'s internal API (which reads its own). Undefined when that node has no such log.
 */
export function allocationLogReader(
  member: MemberIdentity,
  dataDir: string,
  state: () => ClusterState,
  timeoutMs: number,
): (node: NodeId, id: number, request: LogRequest) => Promise<LogChunk | undefined> {
  const dirs = new AllocationDirs(dataDir);
  return async (node, id, request) => {
    if (node === member.nodeId) return dirs.readLog(id, request);
    const record = state().nodes.get(node);
    if (!record) throw new Error(`node ${node} is not a member`);
    const path = `/v1/internal/allocations/${id}/log?${logQuery(request)}`;
    const reply = await callMember(member, record, "GET", path, undefined, timeoutMs);
    if (reply.status === 404) return undefined;
    if (reply.status !== 200) throw new Error(`${record.name} answered ${reply.status}`);
    return checkChunk(JSON.parse(reply.text), record.name);
  };
}

/** A chunk another member sent, checked before it is passed on. */
function checkChunk(raw: unknown, from: string): LogChunk {
  const chunk = raw as Partial<LogChunk> | null;
  const count = (value: unknown) => Number.isSafeInteger(value) && (value as number) >= 0;
  if (
    typeof chunk?.text !== "string" ||
    !count(chunk.start) ||
    !count(chunk.offset) ||
    !count(chunk.size)
  ) {
    throw new Error(`${from} sent a malformed log chunk`);
  }
  return { text: chunk.text, start: chunk.start!, offset: chunk.offset!, size: chunk.size! };
}
