/**
 * The leader's scheduler: where replicas go, and which commands bring the workloads to their
 * specs (first placement, scaling, replacing lost replicas, rolling replacement).
 * Owns: placement decisions and per-node usage. Must not touch: I/O, clocks (time arrives as
 * `at`), the state itself (it only proposes commands; state.ts applies them).
 *
 * Placement, per replica: among ready nodes with enough unreserved cpu and memory, take the node
 * running the fewest replicas of this workload (spread), then the most reserved one (pack, so
 * large workloads still find an emptier node), then the lowest id (deterministic).
 *
 * Rolling replacement is stop-one-then-place-one: it needs no spare room, and it waits until
 * every replica of the new spec runs before replacing the next one, so a spec whose process
 * cannot start stops the rollout after one replica.
 *
 * Draining is the other way round, place-one-then-stop-one: a replica on a draining node is
 * stopped only once its replacement elsewhere runs, one replica per workload at a time, so a
 * workload never has fewer running replicas than before the drain. Without room for the
 * replacement the original keeps running and the move is reported as blocked.
 *
 * The leader proposes what these functions return and asks again only once it is applied:
 * asking twice over the same state yields the same placements twice.
 */

import type { NodeId } from "../raft/types.ts";
import type { AllocationsLost, Replacement, WorkloadCommand, WorkloadRun } from "./commands.ts";
import { describeReplica, toMillicores, type WorkloadSpec } from "./spec.ts";
import {
  type Allocation,
  allocationsOf,
  applyWorkloadCommand,
  isLive,
  isSchedulable,
  type Nodes,
  reservedByNode,
  type WorkloadState,
} from "./state.ts";

export interface NodeUsage {
  readonly node: NodeId;
  readonly cpu: { readonly used: number; readonly total: number };
  readonly memory: { readonly used: number; readonly total: number };
  /** Running allocations (ALLOCS in `mill status`). */
  readonly allocs: number;
}

/** What one replica needs. */
export type ReplicaShape = Pick<WorkloadSpec, "name" | "cpu" | "memoryBytes">;

interface Candidate {
  readonly id: NodeId;
  readonly capacityMillicores: number;
  readonly capacityBytes: number;
  freeMillicores: number;
  freeBytes: number;
}

/** Reserved cpu (cores) and memory over live allocations, and running allocations, per node. */
export function nodeUsage(state: WorkloadState, nodes: Nodes): Map<NodeId, NodeUsage> {
  const reserved = reservedByNode(state.allocations.values());
  const running = new Map<NodeId, number>();
  for (const allocation of state.allocations.values()) {
    if (allocation.status === "running") {
      running.set(allocation.node, (running.get(allocation.node) ?? 0) + 1);
    }
  }
  const usage = new Map<NodeId, NodeUsage>();
  for (const node of [...nodes.values()].sort((a, b) => a.id - b.id)) {
    const used = reserved.get(node.id);
    usage.set(node.id, {
      node: node.id,
      cpu: { used: (used?.millicores ?? 0) / 1000, total: node.resources.cores },
      memory: { used: used?.memoryBytes ?? 0, total: node.resources.memoryBytes },
      allocs: running.get(node.id) ?? 0,
    });
  }
  return usage;
}

/**
 * Chooses nodes for up to `count` replicas of `shape`, given the allocations already reserving
 * room. Returns fewer nodes than asked when the ready nodes have no more room.
 */
export function placeReplicas(
  shape: ReplicaShape,
  count: number,
  nodes: Nodes,
  allocations: Iterable<Allocation>,
  exclude?: NodeId,
): NodeId[] {
  return new Placer(nodes, allocations, exclude).place(shape, count);
}

/** Free room and replica counts per ready node, updated as it places, for one plan. */
class Placer {
  readonly #candidates: Candidate[] = [];
  /** Live replicas per workload per node. */
  readonly #replicas = new Map<string, Map<NodeId, number>>();

  constructor(nodes: Nodes, allocations: Iterable<Allocation>, exclude: NodeId | undefined) {
    const live = [...allocations].filter(isLive);
    const reserved = reservedByNode(live);
    for (const allocation of live) this.#count(allocation.workload, allocation.node);
    for (const node of nodes.values()) {
      if (!isSchedulable(node) || node.id === exclude) continue;
      const used = reserved.get(node.id);
      const capacityMillicores = node.resources.cores * 1000;
      const capacityBytes = node.resources.memoryBytes;
      this.#candidates.push({
        id: node.id,
        capacityMillicores,
        capacityBytes,
        freeMillicores: capacityMillicores - (used?.millicores ?? 0),
        freeBytes: capacityBytes - (used?.memoryBytes ?? 0),
      });
    }
  }

  place(shape: ReplicaShape, count: number): NodeId[] {
    const needMillicores = toMillicores(shape.cpu);
    const replicas = this.#replicasOf(shape.name);
    const placed: NodeId[] = [];
    while (placed.length < count) {
      let best: Candidate | undefined;
      let bestReplicas = 0;
      for (const candidate of this.#candidates) {
        if (candidate.freeMillicores < needMillicores || candidate.freeBytes < shape.memoryBytes) {
          continue;
        }
        const own = replicas.get(candidate.id) ?? 0;
        if (!best || own < bestReplicas || (own === bestReplicas && fuller(candidate, best))) {
          best = candidate;
          bestReplicas = own;
        }
      }
      if (!best) break;
      best.freeMillicores -= needMillicores;
      best.freeBytes -= shape.memoryBytes;
      replicas.set(best.id, bestReplicas + 1);
      placed.push(best.id);
    }
    return placed;
  }

  #count(workload: string, node: NodeId): void {
    const perNode = this.#replicasOf(workload);
    perNode.set(node, (perNode.get(node) ?? 0) + 1);
  }

  #replicasOf(workload: string): Map<NodeId, number> {
    let perNode = this.#replicas.get(workload);
    if (!perNode) {
      perNode = new Map();
      this.#replicas.set(workload, perNode);
    }
    return perNode;
  }
}

/** Packing: the more reserved node first, then the lower id. */
function fuller(a: Candidate, b: Candidate): boolean {
  const fullness = reservedShare(a) - reservedShare(b);
  if (fullness !== 0) return fullness > 0;
  return a.id < b.id;
}

function reservedShare(candidate: Candidate): number {
  return (
    (candidate.capacityMillicores - candidate.freeMillicores) / candidate.capacityMillicores +
    (candidate.capacityBytes - candidate.freeBytes) / candidate.capacityBytes
  );
}

export type RunPlan =
  | { readonly ok: true; readonly command?: WorkloadRun }
  | { readonly ok: false; readonly error: string };

/**
 * Decides what `mill run` commits: nothing for the same spec, otherwise the spec with the first
 * step toward it. Refuses, naming the shortfall, when the ready nodes cannot hold every replica
 * (counting the room this workload's own replicas free when they are replaced).
 */
export function planRun(
  state: WorkloadState,
  nodes: Nodes,
  spec: WorkloadSpec,
  at: number,
): RunPlan {
  const existing = state.workloads.get(spec.name);
  const draft: WorkloadRun = { type: "WorkloadRun", spec, at, stop: [], place: [] };
  const withSpec = applyWorkloadCommand(state, draft, nodes).state;
  if (existing && withSpec.workloads.get(spec.name) === existing) return { ok: true };
  const others = [...state.allocations.values()].filter(
    (allocation) => allocation.workload !== spec.name,
  );
  const room = placeReplicas(spec, spec.replicas, nodes, others).length;
  if (room < spec.replicas) {
    return {
      ok: false,
      error: `no room: ${spec.name} needs ${spec.replicas} replicas of ${describeReplica(spec)}; room for ${room} on the ready nodes: add nodes or lower --replicas, --cpu or --memory`,
    };
  }
  return { ok: true, command: { ...draft, ...planStep(withSpec, nodes, spec.name) } };
}

/**
 * The next step for one workload: move one replica off a draining node, stop surplus replicas,
 * place missing ones, or replace one replica of an older spec once every replica of the current
 * spec runs.
 */
export function planStep(
  state: WorkloadState,
  nodes: Nodes,
  name: string,
): { stop: number[]; place: NodeId[] } {
  const workload = state.workloads.get(name);
  if (!workload) return { stop: [], place: [] };
  const replicas = workload.spec.replicas;
  const live = allocationsOf(state, name).filter(isLive).sort(stopFirst);
  const move = drainMove(state, nodes, workload.spec, live);
  if (move) {
    if (move.kind === "stop") return { stop: move.stop, place: [] };
    return { stop: [], place: move.kind === "place" ? move.place : [] };
  }
  const current = live.filter((allocation) => allocation.specHash === workload.specHash);
  const older = live.filter((allocation) => allocation.specHash !== workload.specHash);
  if (current.length >= replicas) {
    return {
      stop: [...older, ...current.slice(0, current.length - replicas)].map(byId),
      place: [],
    };
  }
  const surplus = older.slice(0, Math.max(0, live.length - replicas));
  const remaining = older.slice(surplus.length);
  const missing = replicas - current.length - remaining.length;
  const settled = current.every((allocation) => allocation.status === "running");
  if (missing === 0 && remaining.length > 0 && settled) {
    const rolled = [...surplus, remaining[0]!];
    const place = placeWithout(state, nodes, workload.spec, 1, rolled);
    if (place.length === 1) return { stop: rolled.map(byId), place };
  }
  return {
    stop: surplus.map(byId),
    place: placeWithout(state, nodes, workload.spec, missing, surplus),
  };
}

/** What draining asks next of one workload that has live replicas on draining nodes. */
export type DrainMove =
  /** Replacements run elsewhere: stop these originals. */
  | { readonly kind: "stop"; readonly stop: number[] }
  /** Start a replacement (and any replica missing anyway) on these nodes. */
  | { readonly kind: "place"; readonly place: NodeId[] }
  /** A replacement is starting; the original stops once it runs. */
  | { readonly kind: "wait" }
  /** The originals keep running: `reason` says why nothing can move them now. */
  | { readonly kind: "blocked"; readonly reason: string };

/**
 * The drain step for one workload, given its live allocations (stopFirst order); undefined when
 * none is on a draining node. A replica on a draining node is stopped only when the workload has
 * more live replicas than its spec asks and none of those elsewhere is still starting (or, if
 * newer than the originals, failing to start): that surplus is the replacement, running.
 */
function drainMove(
  state: WorkloadState,
  nodes: Nodes,
  spec: WorkloadSpec,
  live: readonly Allocation[],
): DrainMove | undefined {
  const leaving = live.filter((allocation) => nodes.get(allocation.node)?.draining === true);
  if (leaving.length === 0) return undefined;
  const staying = live.filter((allocation) => !leaving.includes(allocation));
  const oldestLeaving = Math.min(...leaving.map(byId));
  const starting = staying.find((allocation) => allocation.status === "pending");
  if (starting) return { kind: "wait" };
  const excess = live.length - spec.replicas;
  if (excess > 0) {
    const failing = staying.find(
      (allocation) =>
        (allocation.status === "failed" || allocation.status === "failing") &&
        allocation.id > oldestLeaving,
    );
    if (failing) {
      const on = nodes.get(failing.node)?.name ?? `node ${failing.node}`;
      return {
        kind: "blocked",
        reason: `its replacement (allocation ${failing.id} on ${on}) fails to start: see mill ps`,
      };
    }
    return { kind: "stop", stop: leaving.slice(0, Math.min(excess, leaving.length)).map(byId) };
  }
  const place = placeReplicas(spec, 1 - excess, nodes, state.allocations.values());
  if (place.length === 0) {
    return {
      kind: "blocked",
      reason: `no room for another replica of ${describeReplica(spec)} on the ready nodes: add a node or free room`,
    };
  }
  return { kind: "place", place };
}

/** How far draining `node` is: its live allocations, and those that cannot move now. */
export interface DrainProgress {
  /** Live allocations still on the node, by id. */
  readonly remaining: readonly { readonly id: number; readonly workload: string }[];
  /** Of those, the ones no step can move now, and why. */
  readonly blocked: readonly {
    readonly id: number;
    readonly workload: string;
    readonly reason: string;
  }[];
}

export function drainProgress(state: WorkloadState, nodes: Nodes, node: NodeId): DrainProgress {
  const remaining = [...state.allocations.values()]
    .filter((allocation) => allocation.node === node && isLive(allocation))
    .sort((a, b) => a.id - b.id);
  const blocked: { id: number; workload: string; reason: string }[] = [];
  for (const name of new Set(remaining.map((allocation) => allocation.workload))) {
    const workload = state.workloads.get(name);
    if (!workload) continue;
    const live = allocationsOf(state, name).filter(isLive).sort(stopFirst);
    const move = drainMove(state, nodes, workload.spec, live);
    if (move?.kind !== "blocked") continue;
    for (const allocation of remaining) {
      if (allocation.workload === name) {
        blocked.push({ id: allocation.id, workload: name, reason: move.reason });
      }
    }
  }
  return {
    remaining: remaining.map((allocation) => ({
      id: allocation.id,
      workload: allocation.workload,
    })),
    blocked: blocked.sort((a, b) => a.id - b.id),
  };
}

function placeWithout(
  state: WorkloadState,
  nodes: Nodes,
  spec: WorkloadSpec,
  count: number,
  stopping: readonly Allocation[],
): NodeId[] {
  if (count <= 0) return [];
  const gone = new Set(stopping.map(byId));
  const remaining = [...state.allocations.values()].filter(
    (allocation) => !gone.has(allocation.id),
  );
  return placeReplicas(spec, count, nodes, remaining);
}

/** Replicas that are not running go first, then the oldest. */
function stopFirst(a: Allocation, b: Allocation): number {
  const aRunning = a.status === "running" ? 1 : 0;
  const bRunning = b.status === "running" ? 1 : 0;
  return aRunning - bRunning || a.id - b.id;
}

function byId(allocation: Allocation): number {
  return allocation.id;
}

/**
 * What the leader commits after NodeDown: the node's live allocations are lost, and each
 * workload's missing replicas go to the ready nodes with room. Undefined when the node ran none.
 */
export function planNodeDown(
  state: WorkloadState,
  nodes: Nodes,
  node: NodeId,
  at: number,
): AllocationsLost | undefined {
  const lost = [...state.allocations.values()].filter(
    (allocation) => allocation.node === node && isLive(allocation),
  );
  if (lost.length === 0) return undefined;
  const lostIds = new Set(lost.map(byId));
  const remaining = [...state.allocations.values()].filter(
    (allocation) => !lostIds.has(allocation.id),
  );
  const replacements: Replacement[] = [];
  const placer = new Placer(nodes, remaining, node);
  for (const name of [...new Set(lost.map((allocation) => allocation.workload))].sort()) {
    const workload = state.workloads.get(name);
    if (!workload) continue;
    const alive = remaining.filter(
      (allocation) => allocation.workload === name && isLive(allocation),
    );
    const missing = workload.spec.replicas - alive.length;
    for (const target of placer.place(workload.spec, missing)) {
      replacements.push({ workload: name, node: target });
    }
  }
  return { type: "AllocationsLost", node, at, replacements };
}

/**
 * Everything the leader should commit now, in order, each planned over the state the ones before
 * it leave: allocations lost on nodes that are no longer ready (a NodeDown whose follow-up was
 * never committed, e.g. across a leader change), then one step per workload that is not at its
 * spec (replicas placed when room appeared, rollouts). Empty when everything is settled.
 */
export function planReconcile(state: WorkloadState, nodes: Nodes, at: number): WorkloadCommand[] {
  const commands: WorkloadCommand[] = [];
  let current = state;
  const propose = (command: WorkloadCommand) => {
    commands.push(command);
    current = applyWorkloadCommand(current, command, nodes).state;
  };
  const stranded = new Set<NodeId>();
  for (const allocation of state.allocations.values()) {
    if (isLive(allocation) && nodes.get(allocation.node)?.status !== "ready") {
      stranded.add(allocation.node);
    }
  }
  for (const node of [...stranded].sort((a, b) => a - b)) {
    const lost = planNodeDown(current, nodes, node, at);
    if (lost) propose(lost);
  }
  for (const name of [...current.workloads.keys()].sort()) {
    const step = planStep(current, nodes, name);
    if (step.stop.length > 0 || step.place.length > 0) {
      propose({ type: "WorkloadStep", workload: name, at, ...step });
    }
  }
  return commands;
}

export interface WorkloadProgress {
  readonly name: string;
  readonly replicas: number;
  /** Running replicas of the current spec. */
  readonly running: number;
  readonly pending: number;
  readonly failed: number;
  /** Replicas that exited and wait for their restart (or have not stayed up since). */
  readonly failing: number;
  /** Live replicas of an older spec, still to be replaced. */
  readonly outdated: number;
  /** Every replica runs the current spec and nothing else is live. */
  readonly done: boolean;
}

/** How far a workload is toward its spec, for `mill run` to wait on. Undefined when unknown. */
export function workloadProgress(state: WorkloadState, name: string): WorkloadProgress | undefined {
  const workload = state.workloads.get(name);
  if (!workload) return undefined;
  const live = allocationsOf(state, name).filter(isLive);
  const current = live.filter((allocation) => allocation.specHash === workload.specHash);
  const count = (status: Allocation["status"]) =>
    current.filter((allocation) => allocation.status === status).length;
  const running = count("running");
  const outdated = live.length - current.length;
  return {
    name,
    replicas: workload.spec.replicas,
    running,
    pending: count("pending"),
    failed: count("failed"),
    failing: count("failing"),
    outdated,
    done: running === workload.spec.replicas && current.length === running && outdated === 0,
  };
}
