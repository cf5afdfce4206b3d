import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  drainProgress,
  placeReplicas,
  planReconcile,
  planRun,
} from "../../../lib/workloads/scheduler.ts";
import {
  applyWorkloadCommand,
  emptyWorkloadState,
  type Nodes,
  type WorkloadState,
} from "../../../lib/workloads/state.ts";
import {
  apply,
  live,
  nodesOf,
  run,
  settle,
  spec,
  startAll,
  withDraining,
  withStatus,
} from "./fixtures.ts";

const three = nodesOf({ id: 1 }, { id: 2 }, { id: 3 });

function running(state: WorkloadState, workload = "web") {
  return live(state, workload).filter((allocation) => allocation.status === "running");
}

/**
 * Leader ticks over `nodes`: after each committed step the new allocations may or may not have
 * started yet; `check` sees every intermediate state. Returns the state once nothing is left.
 */
function drainTicks(
  state: WorkloadState,
  nodes: Nodes,
  check: (state: WorkloadState) => void,
): WorkloadState {
  let current = state;
  for (let round = 0; round < 100; round++) {
    check(current);
    const commands = planReconcile(current, nodes, 10_000 + round);
    if (commands.length === 0) {
      const started = startAll(current, nodes);
      if (started === current) return current;
      current = started;
      continue;
    }
    for (const command of commands) {
      current = apply(current, command, nodes);
      check(current);
    }
  }
  throw new Error("the drain did not settle in 100 rounds");
}

describe("draining", () => {
  test("a draining node takes no new placement, neither planned nor applied", () => {
    const draining = withDraining(three, 2);
    assert.deepEqual(placeReplicas(spec(), 3, draining, []), [1, 3, 1]);
    const forced = applyWorkloadCommand(
      run(emptyWorkloadState(), three, spec({ replicas: 1 })),
      { type: "WorkloadStep", workload: "web", at: 2, stop: [], place: [2] },
      draining,
    );
    assert.ok(forced.result.ok);
    assert.deepEqual(forced.result.ok && [forced.result.placed, forced.result.unplaced], [[], 1]);
    const plan = planRun(emptyWorkloadState(), draining, spec({ name: "db", replicas: 2 }), 3);
    assert.ok(plan.ok && plan.command);
    assert.ok(plan.command.place.every((node) => node !== 2));
  });

  test("replicas move one at a time, each replacement running before its original stops", () => {
    const nodes = nodesOf({ id: 1 }, { id: 2 }, { id: 3 }, { id: 4 });
    let state = settle(run(emptyWorkloadState(), nodes, spec({ replicas: 6 })), nodes);
    const onTwo = live(state).filter((allocation) => allocation.node === 2);
    assert.equal(onTwo.length, 2);
    const draining = withDraining(nodes, 2);
    let surged = 0;
    state = drainTicks(state, draining, (current) => {
      assert.ok(running(current).length >= 6, "never fewer running replicas than before");
      assert.ok(live(current).length <= 7, "one move at a time");
      if (live(current).length === 7) surged++;
    });
    assert.ok(surged >= 2, "each move first adds its replacement");
    assert.deepEqual(drainProgress(state, draining, 2), { remaining: [], blocked: [] });
    assert.equal(running(state).length, 6);
    assert.ok(live(state).every((allocation) => allocation.node !== 2));
    assert.deepEqual(
      onTwo.map((allocation) => state.allocations.get(allocation.id)?.status),
      ["stopped", "stopped"],
    );
  });

  test("without room elsewhere the originals keep running and are reported blocked", () => {
    const tight = nodesOf({ id: 1, cores: 2 }, { id: 2, cores: 2 });
    let state = settle(run(emptyWorkloadState(), tight, spec({ name: "small", cpu: 0.5 })), tight);
    state = settle(run(state, tight, spec({ replicas: 2, cpu: 1.5 })), tight);
    const draining = withDraining(tight, 1);
    const after = drainTicks(state, draining, () => {});
    assert.equal(running(after).length, 2, "web keeps both replicas");
    assert.deepEqual(
      running(after, "small").map((allocation) => allocation.node),
      [2],
    );
    const web = live(after).find((allocation) => allocation.node === 1);
    assert.ok(web, "web's replica on node 1 is still there");
    const progress = drainProgress(after, draining, 1);
    assert.deepEqual(
      progress.blocked.map((entry) => [entry.workload, entry.id]),
      [["web", web.id]],
    );
    assert.match(progress.blocked[0]!.reason, /no room for another replica of 1.5 cpu/);
    assert.equal(progress.remaining.length, 1, "small moved, web did not");
  });

  test("a replacement that fails to start blocks the move and keeps the original", () => {
    let state = settle(run(emptyWorkloadState(), three, spec({ replicas: 2 })), three);
    const draining = withDraining(three, 1);
    const [place] = planReconcile(state, draining, 5000);
    assert.equal(place?.type, "WorkloadStep");
    state = apply(state, place!, draining);
    const fresh = live(state).find((allocation) => allocation.status === "pending")!;
    state = apply(
      state,
      {
        type: "AllocationStatus",
        id: fresh.id,
        node: fresh.node,
        status: "failed",
        restarts: 1,
        at: 5001,
      },
      draining,
    );
    assert.deepEqual(planReconcile(state, draining, 5002), []);
    const [blocked] = drainProgress(state, draining, 1).blocked;
    assert.match(blocked?.reason ?? "", new RegExp(`allocation ${fresh.id} on node-3\\) fails`));
    assert.equal(running(state).length, 2);
  });

  test("a down draining node's allocations are lost and replaced as on NodeDown", () => {
    const state = settle(run(emptyWorkloadState(), three, spec({ replicas: 3 })), three);
    const gone = withStatus(withDraining(three, 3), 3, "down");
    const after = settle(state, gone);
    assert.deepEqual(drainProgress(after, gone, 3), { remaining: [], blocked: [] });
    assert.equal(live(after).length, 3);
  });

  test("undrain moves nothing back", () => {
    const draining = withDraining(three, 3);
    const state = settle(run(emptyWorkloadState(), three, spec({ replicas: 3 })), three);
    const drained = drainTicks(state, draining, () => {});
    assert.ok(live(drained).every((allocation) => allocation.node !== 3));
    assert.equal(settle(drained, three), drained);
  });
});
