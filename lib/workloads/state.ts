/**
 * The workload slice of the replicated state: workloads by name, allocations by id, the commands
 * that change them, and the deterministic snapshot form.
 * Owns: every rule of how a workload command changes this slice. Must not touch: I/O, clocks,
 * randomness (time arrives inside commands), placement decisions (scheduler.ts decides on the
 * leader; the commands carry its choices), the cluster's node records (read only, passed in).
 *
 * Decisions recorded here:
 * - State values are replaced, never mutated: applyWorkloadCommand returns a new state and leaves
 *   its inputs as they were.
 * - A placement is re-checked on apply (node ready and not draining, room left); one that no
 *   longer holds is skipped and counted in `unplaced`, so every node applies the same command to
 *   the same state.
 * - "pending", "running", "failing" and "failed" allocations are live: they hold their
 *   reservation and their node runs them. "lost" and "stopped" are terminal; a node stops any
 *   process it has for an allocation that is terminal or gone.
 * - A workload keeps at most KEPT_TERMINAL terminal allocations (for `mill ps`), and no lost
 *   one once every replica of its spec runs again: a lost row ages out when its replacement runs.
 *   Stopping a workload forgets it and all its allocations.
 * - A report replaces what the allocation says about its last exit and next restart.
 * - Allocations of an older spec keep running during a rolling replacement, so the workload
 *   keeps the templates they run (`previous`) until none of them is live.
 */

import type { NodeId } from "../raft/types.ts";
import type { NodeResources, NodeStatus } from "../shared/node-facts.ts";
import type {
  AllocationStatusReport,
  AllocationsLost,
  Replacement,
  WorkloadCommand,
  WorkloadRun,
  WorkloadStop,
} from "./commands.ts";
import {
  specHash,
  templateOf,
  toMillicores,
  type WorkloadSpec,
  type WorkloadTemplate,
} from "./spec.ts";

export type AllocationStatus = "pending" | "running" | "failing" | "lost" | "stopped" | "failed";

/** What the node last reported about an allocation's exits and start-up errors. */
export interface AllocationDetail {
  readonly exitCode?: number;
  readonly signal?: string;
  readonly reason?: string;
  readonly restartAt?: number;
}

export interface Allocation extends AllocationDetail {
  readonly id: number;
  readonly workload: string;
  readonly node: NodeId;
  readonly cpu: number;
  readonly memoryBytes: number;
  readonly status: AllocationStatus;
  readonly restarts: number;
  readonly createdAt: number;
  readonly specHash: string;
}

export interface Workload {
  readonly spec: WorkloadSpec;
  readonly specHash: string;
  readonly createdAt: number;
  readonly updatedAt: number;
  /** Templates of older specs that live allocations still run, by hash. */
  readonly previous: Readonly<Record<string, WorkloadTemplate>>;
}

export interface WorkloadState {
  readonly workloads: ReadonlyMap<string, Workload>;
  readonly allocations: ReadonlyMap<number, Allocation>;
  /** Allocation ids are handed out in order and never reused. */
  readonly nextAllocationId: number;
}

/** The part of a cluster node record the workload rules read (a NodeRecord fits). */
export interface SchedulableNode {
  readonly id: NodeId;
  readonly name: string;
  readonly status: NodeStatus;
  /** A draining node takes no new allocation; the leader moves its live ones elsewhere. */
  readonly draining?: true;
  readonly resources: NodeResources;
}

/** Whether new allocations may go to `node`: it is ready and not draining. */
export function isSchedulable(node: SchedulableNode | undefined): boolean {
  return node?.status === "ready" && node.draining !== true;
}

export type Nodes = ReadonlyMap<NodeId, SchedulableNode>;

export type WorkloadErrorCode =
  | "invalid"
  | "unknown-workload"
  | "unknown-allocation"
  | "wrong-node";

export type WorkloadApplyResult =
  | {
      readonly ok: true;
      /** False when the command was a repeat that left the state as it was. */
      readonly changed: boolean;
      /** Ids of the allocations this command created, in placement order. */
      readonly placed?: readonly number[];
      /** Placements skipped because their node was no longer ready or had no room left. */
      readonly unplaced?: number;
    }
  | {
      readonly ok: false;
      readonly code: WorkloadErrorCode;
      readonly error: string;
      readonly field?: string;
    };

export const KEPT_TERMINAL = 5;

export function emptyWorkloadState(): WorkloadState {
  return { workloads: new Map(), allocations: new Map(), nextAllocationId: 1 };
}

export function isLive(allocation: Allocation): boolean {
  return (
    allocation.status === "pending" ||
    allocation.status === "running" ||
    allocation.status === "failing" ||
    allocation.status === "failed"
  );
}

/** The template an allocation runs: its workload's current one or an older one still live. */
export function templateFor(workload: Workload, hash: string): WorkloadTemplate | undefined {
  return hash === workload.specHash ? templateOf(workload.spec) : workload.previous[hash];
}

export function allocationsOf(state: WorkloadState, workload: string): Allocation[] {
  return [...state.allocations.values()].filter((allocation) => allocation.workload === workload);
}

/** Reserved millicores and bytes per node: the sum over its live allocations. */
export function reservedByNode(
  allocations: Iterable<Allocation>,
): Map<NodeId, { millicores: number; memoryBytes: number; live: number }> {
  const reserved = new Map<NodeId, { millicores: number; memoryBytes: number; live: number }>();
  for (const allocation of allocations) {
    if (!isLive(allocation)) continue;
    const entry = reserved.get(allocation.node) ?? { millicores: 0, memoryBytes: 0, live: 0 };
    entry.millicores += toMillicores(allocation.cpu);
    entry.memoryBytes += allocation.memoryBytes;
    entry.live += 1;
    reserved.set(allocation.node, entry);
  }
  return reserved;
}

/** Applies one committed command. Pure: same state, command and nodes in, same result out. */
export function applyWorkloadCommand(
  state: WorkloadState,
  command: WorkloadCommand,
  nodes: Nodes,
): { state: WorkloadState; result: WorkloadApplyResult } {
  switch (command.type) {
    case "WorkloadRun":
      return applyRun(state, command, nodes);
    case "WorkloadStep": {
      if (!state.workloads.has(command.workload)) {
        return refused(state, "unknown-workload", `no workload named ${command.workload}`);
      }
      return applyChanges(state, command.workload, command.stop, command.place, command.at, nodes);
    }
    case "WorkloadStop":
      return applyStop(state, command);
    case "AllocationStatus":
      return applyReport(state, command);
    case "AllocationsLost":
      return applyLost(state, command, nodes);
  }
}

function applyRun(
  state: WorkloadState,
  command: WorkloadRun,
  nodes: Nodes,
): { state: WorkloadState; result: WorkloadApplyResult } {
  const { spec, at } = command;
  const hash = specHash(spec);
  const existing = state.workloads.get(spec.name);
  const sameSpec =
    existing !== undefined &&
    existing.specHash === hash &&
    existing.spec.replicas === spec.replicas;
  if (sameSpec && command.stop.length === 0 && command.place.length === 0) {
    return { state, result: { ok: true, changed: false } };
  }
  const previous = { ...existing?.previous };
  if (existing && existing.specHash !== hash) {
    previous[existing.specHash] = templateOf(existing.spec);
  }
  const workload: Workload = {
    spec,
    specHash: hash,
    createdAt: existing?.createdAt ?? at,
    updatedAt: sameSpec ? existing.updatedAt : at,
    previous,
  };
  const workloads = new Map(state.workloads).set(spec.name, workload);
  const next = applyChanges(
    { ...state, workloads },
    spec.name,
    command.stop,
    command.place,
    at,
    nodes,
  );
  const changed = !sameSpec || (next.result.ok && next.result.changed);
  return { state: next.state, result: { ...next.result, changed } as WorkloadApplyResult };
}

/** Stops the listed live allocations of `name`, then places new ones on the listed nodes. */
function applyChanges(
  state: WorkloadState,
  name: string,
  stop: readonly number[],
  place: readonly NodeId[],
  at: number,
  nodes: Nodes,
): { state: WorkloadState; result: WorkloadApplyResult } {
  const allocations = new Map(state.allocations);
  let changed = false;
  for (const id of stop) {
    const allocation = allocations.get(id);
    if (allocation?.workload !== name || !isLive(allocation)) continue;
    allocations.set(id, { ...allocation, status: "stopped" });
    changed = true;
  }
  const placed = placeAll(
    allocations,
    place.map((node) => ({ workload: name, node })),
    { ...state, allocations },
    at,
    nodes,
  );
  const next = settle({ ...state, allocations, nextAllocationId: placed.nextId }, [name]);
  return {
    state: next,
    result: {
      ok: true,
      changed: changed || placed.ids.length > 0,
      placed: placed.ids,
      unplaced: place.length - placed.ids.length,
    },
  };
}

/**
 * Creates a pending allocation for each placement whose workload exists and whose node is ready
 * with room left; writes into `allocations` (a fresh copy owned by the caller).
 */
function placeAll(
  allocations: Map<number, Allocation>,
  placements: readonly Replacement[],
  state: WorkloadState,
  at: number,
  nodes: Nodes,
): { ids: number[]; nextId: number } {
  const reserved = reservedByNode(allocations.values());
  const ids: number[] = [];
  let nextId = state.nextAllocationId;
  for (const { workload: name, node: nodeId } of placements) {
    const workload = state.workloads.get(name);
    const node = nodes.get(nodeId);
    if (!workload || !node || !isSchedulable(node)) continue;
    const { cpu, memoryBytes } = workload.spec;
    const used = reserved.get(nodeId) ?? { millicores: 0, memoryBytes: 0, live: 0 };
    const fits =
      used.millicores + toMillicores(cpu) <= node.resources.cores * 1000 &&
      used.memoryBytes + memoryBytes <= node.resources.memoryBytes;
    if (!fits) continue;
    reserved.set(nodeId, {
      millicores: used.millicores + toMillicores(cpu),
      memoryBytes: used.memoryBytes + memoryBytes,
      live: used.live + 1,
    });
    const id = nextId++;
    allocations.set(id, {
      id,
      workload: name,
      node: nodeId,
      cpu,
      memoryBytes,
      status: "pending",
      restarts: 0,
      createdAt: at,
      specHash: workload.specHash,
    });
    ids.push(id);
  }
  return { ids, nextId };
}

function applyStop(
  state: WorkloadState,
  command: WorkloadStop,
): { state: WorkloadState; result: WorkloadApplyResult } {
  if (!state.workloads.has(command.name)) {
    return refused(state, "unknown-workload", `no workload named ${command.name}: see mill ps`);
  }
  const workloads = new Map(state.workloads);
  workloads.delete(command.name);
  const allocations = new Map(
    [...state.allocations].filter(([, allocation]) => allocation.workload !== command.name),
  );
  return { state: { ...state, workloads, allocations }, result: { ok: true, changed: true } };
}

function applyReport(
  state: WorkloadState,
  command: AllocationStatusReport,
): { state: WorkloadState; result: WorkloadApplyResult } {
  const allocation = state.allocations.get(command.id);
  if (!allocation) {
    return refused(state, "unknown-allocation", `no allocation ${command.id}: stop its process`);
  }
  if (allocation.node !== command.node) {
    return refused(
      state,
      "wrong-node",
      `allocation ${command.id} belongs to node ${allocation.node}, not node ${command.node}: stop its process`,
    );
  }
  const restarts = Math.max(allocation.restarts, command.restarts);
  const { id, workload, node, cpu, memoryBytes, createdAt, specHash } = allocation;
  const updated: Allocation = {
    id,
    workload,
    node,
    cpu,
    memoryBytes,
    createdAt,
    specHash,
    status: command.status,
    restarts,
    ...detailOf(command),
  };
  if (!isLive(allocation) || sameAllocation(allocation, updated)) {
    return { state, result: { ok: true, changed: false } };
  }
  const allocations = new Map(state.allocations).set(command.id, updated);
  return {
    state: settle({ ...state, allocations }, [allocation.workload]),
    result: { ok: true, changed: true },
  };
}

/** The detail fields a report carries, only those it has. */
function detailOf(detail: AllocationDetail): AllocationDetail {
  return {
    ...(detail.exitCode === undefined ? {} : { exitCode: detail.exitCode }),
    ...(detail.signal === undefined ? {} : { signal: detail.signal }),
    ...(detail.reason === undefined ? {} : { reason: detail.reason }),
    ...(detail.restartAt === undefined ? {} : { restartAt: detail.restartAt }),
  };
}

function sameAllocation(a: Allocation, b: Allocation): boolean {
  return (
    a.status === b.status &&
    a.restarts === b.restarts &&
    a.exitCode === b.exitCode &&
    a.signal === b.signal &&
    a.reason === b.reason &&
    a.restartAt === b.restartAt
  );
}

function applyLost(
  state: WorkloadState,
  command: AllocationsLost,
  nodes: Nodes,
): { state: WorkloadState; result: WorkloadApplyResult } {
  const allocations = new Map(state.allocations);
  const touched = new Set<string>();
  let lost = 0;
  for (const allocation of state.allocations.values()) {
    if (allocation.node !== command.node || !isLive(allocation)) continue;
    allocations.set(allocation.id, { ...allocation, status: "lost" });
    touched.add(allocation.workload);
    lost++;
  }
  if (lost === 0) {
    // A repeat (the hook and the leader's reconcile both saw the node down): nothing to replace.
    return {
      state,
      result: { ok: true, changed: false, placed: [], unplaced: command.replacements.length },
    };
  }
  const usable = command.replacements.filter((placement) => placement.node !== command.node);
  const placed = placeAll(allocations, usable, { ...state, allocations }, command.at, nodes);
  for (const placement of usable) touched.add(placement.workload);
  const next = settle({ ...state, allocations, nextAllocationId: placed.nextId }, [...touched]);
  return {
    state: next,
    result: {
      ok: true,
      changed: true,
      placed: placed.ids,
      unplaced: command.replacements.length - placed.ids.length,
    },
  };
}

/**
 * Tidies the named workloads after a change: forgets lost allocations once every replica of the
 * spec runs, terminal ones beyond the newest KEPT_TERMINAL, and older templates no live
 * allocation runs any more.
 */
function settle(state: WorkloadState, names: readonly string[]): WorkloadState {
  const allocations = new Map(state.allocations);
  const workloads = new Map(state.workloads);
  for (const name of new Set(names)) {
    const own = allocationsOf(state, name);
    const workload = workloads.get(name);
    const runningNow = own.filter(
      (allocation) => allocation.status === "running" && allocation.specHash === workload?.specHash,
    ).length;
    const replaced = workload !== undefined && runningNow >= workload.spec.replicas;
    const terminal = own
      .filter((allocation) => !isLive(allocation) && !(replaced && allocation.status === "lost"))
      .sort((a, b) => b.id - a.id);
    for (const allocation of own) {
      if (replaced && allocation.status === "lost") allocations.delete(allocation.id);
    }
    for (const allocation of terminal.slice(KEPT_TERMINAL)) allocations.delete(allocation.id);
    if (!workload) continue;
    const running = new Set(own.filter(isLive).map((allocation) => allocation.specHash));
    const previous = Object.fromEntries(
      Object.entries(workload.previous).filter(([hash]) => running.has(hash)),
    );
    if (Object.keys(previous).length !== Object.keys(workload.previous).length) {
      workloads.set(name, { ...workload, previous });
    }
  }
  return { ...state, workloads, allocations };
}

function refused(
  state: WorkloadState,
  code: WorkloadErrorCode,
  error: string,
): { state: WorkloadState; result: WorkloadApplyResult } {
  return { state, result: { ok: false, code, error } };
}

/** What a node's supervisor runs: its live allocations with the template each one runs. */
export interface DesiredAllocation extends WorkloadTemplate {
  readonly id: number;
  readonly workload: string;
  readonly specHash: string;
  /** Restarts already reported, so a restarted agent keeps counting from there. */
  readonly restarts: number;
}

export function desiredForNode(state: WorkloadState, node: NodeId): DesiredAllocation[] {
  const desired: DesiredAllocation[] = [];
  for (const allocation of [...state.allocations.values()].sort((a, b) => a.id - b.id)) {
    if (allocation.node !== node || !isLive(allocation)) continue;
    const workload = state.workloads.get(allocation.workload);
    const template = workload && templateFor(workload, allocation.specHash);
    if (!template) continue;
    desired.push({
      id: allocation.id,
      workload: allocation.workload,
      specHash: allocation.specHash,
      restarts: allocation.restarts,
      ...template,
    });
  }
  return desired;
}
