import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import type { NodeId } from "../../../lib/raft/types.ts";
import {
  nodeUsage,
  placeReplicas,
  planNodeDown,
  planReconcile,
  planRun,
  planStep,
  workloadProgress,
} from "../../../lib/workloads/scheduler.ts";
import { specHash } from "../../../lib/workloads/spec.ts";
import {
  emptyWorkloadState,
  isLive,
  type Nodes,
  reservedByNode,
  type WorkloadState,
} from "../../../lib/workloads/state.ts";
import {
  apply,
  GiB,
  live,
  MiB,
  nodesOf,
  run,
  settle,
  spec,
  startAll,
  withStatus,
} from "./fixtures.ts";

const three = nodesOf({ id: 1 }, { id: 2 }, { id: 3 });

function nodesOfLive(state: WorkloadState, workload = "web"): NodeId[] {
  return live(state, workload)
    .map((allocation) => allocation.node)
    .sort((a, b) => a - b);
}

describe("placement", () => {
  test("replicas of one workload spread across nodes first", () => {
    const state = run(emptyWorkloadState(), three, spec({ replicas: 3 }));
    assert.deepEqual(nodesOfLive(state), [1, 2, 3]);
    const six = run(emptyWorkloadState(), three, spec({ replicas: 6 }));
    assert.deepEqual(nodesOfLive(six), [1, 1, 2, 2, 3, 3]);
  });

  test("then pack: a new workload goes to the most reserved node that fits", () => {
    let state = run(emptyWorkloadState(), three, spec({ name: "db", cpu: 2, memory: "4G" }));
    assert.deepEqual(nodesOfLive(state, "db"), [1]);
    state = run(state, three, spec({ name: "cache", cpu: 1 }));
    assert.deepEqual(nodesOfLive(state, "cache"), [1]);
    // Node 1 has 1 core left: a 2-core replica goes to the next node, not the full one.
    state = run(state, three, spec({ name: "batch", cpu: 2 }));
    assert.deepEqual(nodesOfLive(state, "batch"), [2]);
  });

  test("only ready nodes with room for both cpu and memory are used", () => {
    const nodes = nodesOf(
      { id: 1, cores: 8, memoryBytes: 512 * MiB },
      { id: 2, cores: 1, memoryBytes: 8 * GiB },
      { id: 3, status: "down" },
      { id: 4, status: "left" },
    );
    const chosen = placeReplicas(spec({ cpu: 1, memory: "1G" }), 5, nodes, []);
    assert.deepEqual(chosen, [2]);
  });

  test("a shortfall is refused naming what was asked and the room there is", () => {
    const nodes = nodesOf(
      { id: 1, cores: 1 },
      { id: 2, cores: 1 },
      { id: 3, cores: 1, memoryBytes: 128 * MiB },
    );
    const plan = planRun(emptyWorkloadState(), nodes, spec({ replicas: 5, cpu: 0.5 }), 1);
    assert.deepEqual(plan, {
      ok: false,
      error:
        "no room: web needs 5 replicas of 0.5 cpu / 256M; room for 4 on the ready nodes: add nodes or lower --replicas, --cpu or --memory",
    });
  });

  test("fractional cpu adds up exactly", () => {
    const nodes = nodesOf({ id: 1, cores: 1 });
    const plan = planRun(
      emptyWorkloadState(),
      nodes,
      spec({ replicas: 10, cpu: 0.1, memory: "1M" }),
      1,
    );
    assert.equal(plan.ok && plan.command?.place.length, 10);
  });

  test("the same spec again plans nothing; a new replica count scales without replacing", () => {
    const state = settle(run(emptyWorkloadState(), three, spec({ replicas: 2 })), three);
    assert.deepEqual(planRun(state, three, spec({ replicas: 2 }), 9), { ok: true });
    const up = settle(run(state, three, spec({ replicas: 3 }), 9), three);
    assert.deepEqual(
      live(up).map((allocation) => allocation.id),
      [1, 2, 3],
    );
    const down = settle(run(up, three, spec({ replicas: 1 }), 10), three);
    assert.deepEqual(
      live(down).map((allocation) => allocation.id),
      [3],
    );
  });
});

describe("rescheduling", () => {
  test("NodeDown loses the node's allocations and replaces them on the others", () => {
    const state = settle(run(emptyWorkloadState(), three, spec({ replicas: 3 })), three);
    const down = withStatus(three, 2, "down");
    const command = planNodeDown(state, down, 2, 5000);
    assert.deepEqual(command, {
      type: "AllocationsLost",
      node: 2,
      at: 5000,
      replacements: [{ workload: "web", node: 1 }],
    });
    const after = apply(state, command!, down);
    assert.equal(live(after).length, 3);
    assert.equal(after.allocations.get(2)?.status, "lost");
    assert.ok(live(after).every((allocation) => allocation.node !== 2));
    assert.equal(planNodeDown(after, down, 2, 5001), undefined);
  });

  test("replacements for several workloads share the room left", () => {
    const nodes = nodesOf({ id: 1, cores: 1 }, { id: 2, cores: 1 });
    let state = run(emptyWorkloadState(), nodes, spec({ name: "a", replicas: 2, cpu: 0.5 }));
    state = run(state, nodes, spec({ name: "b", replicas: 2, cpu: 0.5 }));
    const down = withStatus(nodes, 2, "down");
    const command = planNodeDown(state, down, 2, 1)!;
    assert.deepEqual(command.replacements, []);
    const after = apply(state, command, down);
    assert.equal(live(after, "a").length + live(after, "b").length, 2);
    // Room appears when the node comes back: the reconcile places the missing replicas.
    const back = settle(after, nodes);
    assert.deepEqual([live(back, "a").length, live(back, "b").length], [2, 2]);
  });

  test("a stranded node (NodeDown without its follow-up) is handled by the reconcile", () => {
    const state = settle(run(emptyWorkloadState(), three, spec({ replicas: 3 })), three);
    const down = withStatus(three, 3, "left");
    const [lost, ...rest] = planReconcile(state, down, 7000);
    assert.equal(lost?.type, "AllocationsLost");
    assert.deepEqual(rest, []);
    assert.deepEqual(planReconcile(apply(state, lost!, down), down, 7000), []);
  });

  test("a node that comes back gets no work back and keeps its lost allocations terminal", () => {
    let state = settle(run(emptyWorkloadState(), three, spec({ replicas: 3 })), three);
    const down = withStatus(three, 1, "down");
    state = settle(apply(state, planNodeDown(state, down, 1, 1)!, down), down);
    const back = settle(state, three);
    assert.equal(back, state);
    assert.equal(live(back).length, 3);
  });
});

describe("rolling replacement", () => {
  test("a new spec replaces one replica at a time, never over the replica count", () => {
    let state = settle(run(emptyWorkloadState(), three, spec({ replicas: 3 })), three);
    const newer = spec({ replicas: 3, env: ["VERSION=2"] });
    state = run(state, three, newer, 5000);
    const newHash = specHash(newer);
    const seen: number[] = [];
    for (let round = 0; round < 10; round++) {
      const current = live(state).filter((allocation) => allocation.specHash === newHash);
      seen.push(current.length);
      assert.ok(live(state).length <= 3, "never more live replicas than asked");
      assert.ok(current.filter((allocation) => allocation.status === "pending").length <= 1);
      const waiting = planReconcile(state, three, 6000 + round);
      assert.deepEqual(waiting, [], "nothing moves while the new replica is not running");
      state = startAll(state, three);
      for (const command of planReconcile(state, three, 6000 + round)) {
        state = apply(state, command, three);
      }
      if (workloadProgress(state, "web")?.done) break;
    }
    assert.deepEqual(seen, [1, 2, 3]);
    assert.deepEqual(workloadProgress(state, "web"), {
      name: "web",
      replicas: 3,
      running: 3,
      pending: 0,
      failed: 0,
      failing: 0,
      outdated: 0,
      done: true,
    });
    assert.deepEqual(state.workloads.get("web")?.previous, {});
  });

  test("a new replica that cannot start halts the rollout", () => {
    let state = settle(run(emptyWorkloadState(), three, spec({ replicas: 2 })), three);
    state = run(state, three, spec({ replicas: 2, command: ["missing-binary"] }), 5000);
    const [fresh] = live(state).filter((allocation) => allocation.status === "pending");
    state = apply(
      state,
      {
        type: "AllocationStatus",
        id: fresh!.id,
        node: fresh!.node,
        status: "failed",
        restarts: 0,
        at: 6000,
      },
      three,
    );
    assert.deepEqual(planStep(state, three, "web"), { stop: [], place: [] });
    assert.equal(workloadProgress(state, "web")?.failed, 1);
    assert.equal(workloadProgress(state, "web")?.outdated, 1);
  });

  test("a full cluster rolls too: the stopped replica's room takes the new one", () => {
    const tight = nodesOf({ id: 1, cores: 1 }, { id: 2, cores: 1 });
    let state = settle(run(emptyWorkloadState(), tight, spec({ replicas: 2, cpu: 1 })), tight);
    state = settle(run(state, tight, spec({ replicas: 2, cpu: 1, env: ["V=2"] }), 2), tight);
    assert.equal(workloadProgress(state, "web")?.done, true);
    assert.deepEqual(nodesOfLive(state), [1, 2]);
  });

  test("a changed spec whose replicas do not fit is refused before anything changes", () => {
    const state = settle(run(emptyWorkloadState(), three, spec({ replicas: 3 })), three);
    const plan = planRun(state, three, spec({ replicas: 3, cpu: 5 }), 2);
    assert.equal(plan.ok, false);
    assert.match(!plan.ok ? plan.error : "", /needs 3 replicas of 5 cpu \/ 256M; room for 0/);
  });
});

describe("usage", () => {
  test("cpu and memory count live allocations; ALLOCS counts running ones", () => {
    let state = run(emptyWorkloadState(), three, spec({ replicas: 4, cpu: 0.5, memory: "1G" }));
    state = apply(
      state,
      { type: "AllocationStatus", id: 1, node: 1, status: "running", restarts: 0, at: 2 },
      three,
    );
    const usage = nodeUsage(state, three);
    assert.deepEqual(usage.get(1), {
      node: 1,
      cpu: { used: 1, total: 4 },
      memory: { used: 2 * GiB, total: 8 * GiB },
      allocs: 1,
    });
    assert.deepEqual(usage.get(3), {
      node: 3,
      cpu: { used: 0.5, total: 4 },
      memory: { used: GiB, total: 8 * GiB },
      allocs: 0,
    });
  });
});

describe("invariants under random histories", () => {
  const action = fc.oneof(
    fc.record({
      kind: fc.constant("run" as const),
      name: fc.constantFrom("a", "b", "c"),
      replicas: fc.integer({ min: 1, max: 6 }),
      cpu: fc.constantFrom(0.25, 0.5, 1, 1.5),
      version: fc.integer({ min: 1, max: 3 }),
    }),
    fc.record({ kind: fc.constant("down" as const), node: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ kind: fc.constant("up" as const), node: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ kind: fc.constant("start" as const) }),
    fc.record({ kind: fc.constant("reconcile" as const) }),
    fc.record({ kind: fc.constant("stop" as const), name: fc.constantFrom("a", "b", "c") }),
  );

  test("no node is ever over capacity and no workload runs more replicas than asked", () => {
    fc.assert(
      fc.property(fc.array(action, { maxLength: 40 }), (actions) => {
        let nodes: Nodes = nodesOf(
          { id: 1, cores: 2 },
          { id: 2, cores: 2 },
          { id: 3 },
          { id: 4, cores: 1 },
        );
        let state = emptyWorkloadState();
        let at = 1;
        for (const step of actions) {
          at++;
          if (step.kind === "run") {
            const wanted = spec({
              name: step.name,
              replicas: step.replicas,
              cpu: step.cpu,
              env: [`V=${step.version}`],
            });
            const plan = planRun(state, nodes, wanted, at);
            if (plan.ok && plan.command) state = apply(state, plan.command, nodes);
          } else if (step.kind === "down") {
            nodes = withStatus(nodes, step.node, "down");
            const lost = planNodeDown(state, nodes, step.node, at);
            if (lost) state = apply(state, lost, nodes);
          } else if (step.kind === "up") {
            nodes = withStatus(nodes, step.node, "ready");
          } else if (step.kind === "start") {
            state = startAll(state, nodes, at);
          } else if (step.kind === "reconcile") {
            for (const command of planReconcile(state, nodes, at))
              state = apply(state, command, nodes);
          } else if (state.workloads.has(step.name)) {
            state = apply(state, { type: "WorkloadStop", name: step.name, at }, nodes);
          }
          for (const [id, used] of reservedByNode(state.allocations.values())) {
            const node = nodes.get(id)!;
            assert.ok(used.millicores <= node.resources.cores * 1000, `node ${id} cpu`);
            assert.ok(used.memoryBytes <= node.resources.memoryBytes, `node ${id} memory`);
          }
          for (const [name, workload] of state.workloads) {
            const count = [...state.allocations.values()].filter(
              (a) => a.workload === name && isLive(a),
            ).length;
            assert.ok(
              count <= workload.spec.replicas,
              `${name}: ${count} > ${workload.spec.replicas}`,
            );
          }
        }
      }),
      { seed: 7, numRuns: 300 },
    );
  });
});
