/**
 * Shared builders for workload unit tests: nodes, specs, and a tiny leader loop that plans and
 * applies the way the cluster FSM will.
 * Owns: test data only.
 */

import type { NodeId } from "../../../lib/raft/types.ts";
import type { NodeStatus } from "../../../lib/shared/node-facts.ts";
import type { WorkloadCommand } from "../../../lib/workloads/commands.ts";
import { planReconcile, planRun } from "../../../lib/workloads/scheduler.ts";
import { parseWorkloadRequest, type WorkloadSpec } from "../../../lib/workloads/spec.ts";
import {
  applyWorkloadCommand,
  type Nodes,
  type SchedulableNode,
  type WorkloadState,
} from "../../../lib/workloads/state.ts";

export const MiB = 1024 ** 2;
export const GiB = 1024 ** 3;

export interface NodeShape {
  readonly id: NodeId;
  readonly cores?: number;
  readonly memoryBytes?: number;
  readonly status?: NodeStatus;
}

/** Nodes named node-<id>, 4 cores and 8 GiB unless told otherwise. */
export function nodesOf(...shapes: NodeShape[]): Map<NodeId, SchedulableNode> {
  return new Map(
    shapes.map((shape) => [
      shape.id,
      {
        id: shape.id,
        name: `node-${shape.id}`,
        status: shape.status ?? "ready",
        resources: { cores: shape.cores ?? 4, memoryBytes: shape.memoryBytes ?? 8 * GiB },
      },
    ]),
  );
}

export function withStatus(
  nodes: Nodes,
  id: NodeId,
  status: NodeStatus,
): Map<NodeId, SchedulableNode> {
  const copy = new Map(nodes);
  copy.set(id, { ...nodes.get(id)!, status });
  return copy;
}

/** The same nodes with `id` draining (NodeDrain applied). */
export function withDraining(nodes: Nodes, id: NodeId): Map<NodeId, SchedulableNode> {
  const copy = new Map(nodes);
  copy.set(id, { ...nodes.get(id)!, draining: true });
  return copy;
}

export function spec(overrides: Record<string, unknown> = {}): WorkloadSpec {
  const checked = parseWorkloadRequest({ name: "web", command: ["sleep", "3600"], ...overrides });
  if (!checked.ok) throw new Error(checked.problem.error);
  return checked.value;
}

export function apply(state: WorkloadState, command: WorkloadCommand, nodes: Nodes): WorkloadState {
  const { state: next, result } = applyWorkloadCommand(state, command, nodes);
  if (!result.ok) throw new Error(result.error);
  return next;
}

/** Plans `mill run` and applies it; throws the planner's error. */
export function run(
  state: WorkloadState,
  nodes: Nodes,
  wanted: WorkloadSpec,
  at = 1000,
): WorkloadState {
  const plan = planRun(state, nodes, wanted, at);
  if (!plan.ok) throw new Error(plan.error);
  return plan.command ? apply(state, plan.command, nodes) : state;
}

/** Every node reports every pending allocation it holds as running. */
export function startAll(state: WorkloadState, nodes: Nodes, at = 2000): WorkloadState {
  let next = state;
  for (const allocation of state.allocations.values()) {
    if (allocation.status !== "pending") continue;
    next = apply(
      next,
      {
        type: "AllocationStatus",
        id: allocation.id,
        node: allocation.node,
        status: "running",
        restarts: 0,
        at,
      },
      nodes,
    );
  }
  return next;
}

/** Leader ticks: reconcile, apply, start, until nothing is left to do (bounded). */
export function settle(state: WorkloadState, nodes: Nodes, at = 3000): WorkloadState {
  let next = startAll(state, nodes, at);
  for (let round = 0; round < 100; round++) {
    const commands = planReconcile(next, nodes, at);
    if (commands.length === 0) return next;
    for (const command of commands) next = apply(next, command, nodes);
    next = startAll(next, nodes, at);
  }
  throw new Error("the workloads did not settle in 100 rounds");
}

export function live(state: WorkloadState, workload = "web") {
  return [...state.allocations.values()].filter(
    (allocation) =>
      allocation.workload === workload &&
      ["pending", "running", "failed"].includes(allocation.status),
  );
}
