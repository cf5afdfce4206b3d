import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { describe, test } from "node:test";
import { Encoder } from "cbor-x";
import { parseWorkloadCommand, type WorkloadCommand } from "../../../lib/workloads/commands.ts";
import { restoreWorkloadSnapshot, workloadSnapshot } from "../../../lib/workloads/snapshot.ts";
import { specHash, templateOf } from "../../../lib/workloads/spec.ts";
import {
  applyWorkloadCommand,
  desiredForNode,
  emptyWorkloadState,
  KEPT_TERMINAL,
  type WorkloadState,
} from "../../../lib/workloads/state.ts";
import { apply, GiB, live, MiB, nodesOf, spec, withStatus } from "./fixtures.ts";

const nodes = nodesOf({ id: 1 }, { id: 2 }, { id: 3 });
const cbor = new Encoder({ useRecords: false, mapsAsObjects: true });
/** Hex of the encoding, copied out: cbor-x reuses its output buffer across calls. */
const hexOf = (value: unknown) => Buffer.from(cbor.encode(value)).toString("hex");

function runCommand(overrides: Partial<Extract<WorkloadCommand, { type: "WorkloadRun" }>> = {}) {
  return {
    type: "WorkloadRun" as const,
    spec: spec({ replicas: 3 }),
    at: 1000,
    stop: [],
    place: [1, 2, 3],
    ...overrides,
  };
}

function report(id: number, node: number, restarts = 0, status: "running" | "failed" = "running") {
  return { type: "AllocationStatus" as const, id, node, status, restarts, at: 2000 };
}

describe("workload state", () => {
  test("WorkloadRun stores the spec and places pending allocations with ids in order", () => {
    const { state, result } = applyWorkloadCommand(emptyWorkloadState(), runCommand(), nodes);
    assert.deepEqual(result, { ok: true, changed: true, placed: [1, 2, 3], unplaced: 0 });
    assert.equal(state.nextAllocationId, 4);
    assert.deepEqual(state.allocations.get(2), {
      id: 2,
      workload: "web",
      node: 2,
      cpu: 0.25,
      memoryBytes: 256 * MiB,
      status: "pending",
      restarts: 0,
      createdAt: 1000,
      specHash: specHash(spec()),
    });
    assert.equal(state.workloads.get("web")?.createdAt, 1000);
  });

  test("the same spec again changes nothing and returns the same state", () => {
    const first = apply(emptyWorkloadState(), runCommand(), nodes);
    const again = applyWorkloadCommand(first, runCommand({ at: 5000, place: [] }), nodes);
    assert.equal(again.state, first);
    assert.deepEqual(again.result, { ok: true, changed: false });
  });

  test("apply leaves its inputs untouched", () => {
    const first = apply(emptyWorkloadState(), runCommand(), nodes);
    const before = JSON.stringify(workloadSnapshot(first));
    const nodesBefore = JSON.stringify([...nodes]);
    apply(
      first,
      runCommand({ spec: spec({ replicas: 3, env: ["A=1"] }), stop: [1], place: [1] }),
      nodes,
    );
    apply(
      first,
      { type: "AllocationsLost", node: 2, at: 3000, replacements: [{ workload: "web", node: 3 }] },
      nodes,
    );
    apply(first, { type: "WorkloadStop", name: "web", at: 3000 }, nodes);
    assert.equal(JSON.stringify(workloadSnapshot(first)), before);
    assert.equal(JSON.stringify([...nodes]), nodesBefore);
  });

  test("placements on a node that is not ready or has no room are skipped", () => {
    const small = nodesOf({ id: 1, cores: 1, memoryBytes: GiB }, { id: 2, status: "down" });
    const big = runCommand({ spec: spec({ replicas: 3, cpu: 0.5 }), place: [1, 1, 1, 2, 9] });
    const { state, result } = applyWorkloadCommand(emptyWorkloadState(), big, small);
    assert.deepEqual(result, { ok: true, changed: true, placed: [1, 2], unplaced: 3 });
    assert.equal(state.allocations.size, 2);
  });

  test("WorkloadStep needs a known workload", () => {
    const { state, result } = applyWorkloadCommand(
      emptyWorkloadState(),
      { type: "WorkloadStep", workload: "api", at: 1, stop: [], place: [1] },
      nodes,
    );
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.code, "unknown-workload");
    assert.equal(state.allocations.size, 0);
  });

  test("WorkloadStep stops only live allocations of its own workload", () => {
    let state = apply(emptyWorkloadState(), runCommand(), nodes);
    state = apply(state, runCommand({ spec: spec({ name: "api" }), place: [1] }), nodes);
    const { state: next, result } = applyWorkloadCommand(
      state,
      { type: "WorkloadStep", workload: "web", at: 3000, stop: [1, 4, 77], place: [] },
      nodes,
    );
    assert.deepEqual(result, { ok: true, changed: true, placed: [], unplaced: 0 });
    assert.equal(next.allocations.get(1)?.status, "stopped");
    assert.equal(next.allocations.get(4)?.status, "pending");
  });

  test("AllocationStatus records running, restarts only grow, and only from the owner", () => {
    let state = apply(emptyWorkloadState(), runCommand(), nodes);
    state = apply(state, report(1, 1, 2), nodes);
    assert.deepEqual(
      [state.allocations.get(1)?.status, state.allocations.get(1)?.restarts],
      ["running", 2],
    );
    const older = applyWorkloadCommand(state, report(1, 1, 1), nodes);
    assert.deepEqual(older.result, { ok: true, changed: false });
    const failed = apply(state, report(1, 1, 3, "failed"), nodes);
    assert.equal(failed.allocations.get(1)?.status, "failed");
    const wrong = applyWorkloadCommand(state, report(1, 2), nodes);
    assert.equal(!wrong.result.ok && wrong.result.code, "wrong-node");
    const unknown = applyWorkloadCommand(state, report(99, 1), nodes);
    assert.equal(!unknown.result.ok && unknown.result.code, "unknown-allocation");
  });

  test("a report for a lost allocation changes nothing (the node is about to stop it)", () => {
    let state = apply(emptyWorkloadState(), runCommand(), nodes);
    state = apply(state, { type: "AllocationsLost", node: 1, at: 3000, replacements: [] }, nodes);
    const late = applyWorkloadCommand(state, report(1, 1), nodes);
    assert.equal(late.state, state);
    assert.equal(state.allocations.get(1)?.status, "lost");
  });

  test("AllocationsLost marks the node's live allocations lost and places replacements", () => {
    let state = apply(emptyWorkloadState(), runCommand(), nodes);
    const down = withStatus(nodes, 2, "down");
    const command = {
      type: "AllocationsLost" as const,
      node: 2,
      at: 4000,
      replacements: [{ workload: "web", node: 3 }],
    };
    const { state: next, result } = applyWorkloadCommand(state, command, down);
    assert.deepEqual(result, { ok: true, changed: true, placed: [4], unplaced: 0 });
    assert.equal(next.allocations.get(2)?.status, "lost");
    assert.deepEqual(
      [next.allocations.get(4)?.node, next.allocations.get(4)?.createdAt],
      [3, 4000],
    );
    state = next;
    const repeat = applyWorkloadCommand(state, command, down);
    assert.equal(repeat.state, state);
    assert.deepEqual(repeat.result, { ok: true, changed: false, placed: [], unplaced: 1 });
  });

  test("a replacement on the lost node itself is never placed", () => {
    const state = apply(emptyWorkloadState(), runCommand(), nodes);
    const { result } = applyWorkloadCommand(
      state,
      { type: "AllocationsLost", node: 2, at: 4000, replacements: [{ workload: "web", node: 2 }] },
      nodes,
    );
    assert.deepEqual(result, { ok: true, changed: true, placed: [], unplaced: 1 });
  });

  test("WorkloadStop forgets the workload and its allocations; unknown names are refused", () => {
    let state = apply(emptyWorkloadState(), runCommand(), nodes);
    state = apply(state, runCommand({ spec: spec({ name: "api" }), place: [1] }), nodes);
    state = apply(state, { type: "WorkloadStop", name: "web", at: 5000 }, nodes);
    assert.deepEqual([...state.workloads.keys()], ["api"]);
    assert.deepEqual([...state.allocations.keys()], [4]);
    assert.equal(state.nextAllocationId, 5);
    const again = applyWorkloadCommand(
      state,
      { type: "WorkloadStop", name: "web", at: 6000 },
      nodes,
    );
    assert.equal(!again.result.ok && again.result.code, "unknown-workload");
  });

  test("only the newest terminal allocations of a workload are kept", () => {
    let state = apply(emptyWorkloadState(), runCommand({ spec: spec(), place: [1] }), nodes);
    for (let round = 0; round < KEPT_TERMINAL + 3; round++) {
      const [current] = live(state);
      state = apply(
        state,
        {
          type: "WorkloadStep",
          workload: "web",
          at: 1000 + round,
          stop: [current!.id],
          place: [1],
        },
        nodes,
      );
    }
    const terminal = [...state.allocations.values()].filter((a) => a.status === "stopped");
    assert.equal(terminal.length, KEPT_TERMINAL);
    assert.deepEqual(
      terminal.map((a) => a.id),
      [4, 5, 6, 7, 8],
    );
  });

  test("older templates stay while their allocations are live, and nodes run them", () => {
    let state = apply(emptyWorkloadState(), runCommand(), nodes);
    const oldHash = specHash(spec());
    const changed = spec({ replicas: 3, command: ["sleep", "99"] });
    state = apply(state, runCommand({ spec: changed, stop: [1], place: [1] }), nodes);
    assert.deepEqual(Object.keys(state.workloads.get("web")!.previous), [oldHash]);
    const onNode1 = desiredForNode(state, 1);
    assert.deepEqual(
      onNode1.map((d) => [d.id, d.command]),
      [[4, ["sleep", "99"]]],
    );
    assert.deepEqual(desiredForNode(state, 2)[0]?.command, ["sleep", "3600"]);
    state = apply(
      state,
      { type: "WorkloadStep", workload: "web", at: 2, stop: [2, 3], place: [2, 3] },
      nodes,
    );
    assert.deepEqual(state.workloads.get("web")!.previous, {});
    assert.deepEqual(
      desiredForNode(state, 2).map((d) => d.command),
      [["sleep", "99"]],
    );
  });

  test("desiredForNode carries the template and reported restarts of live allocations only", () => {
    let state = apply(
      emptyWorkloadState(),
      runCommand({ spec: spec({ env: ["A=1"], replicas: 2 }), place: [1, 1] }),
      nodes,
    );
    state = apply(state, report(2, 1, 4), nodes);
    state = apply(
      state,
      { type: "WorkloadStep", workload: "web", at: 3, stop: [1], place: [] },
      nodes,
    );
    assert.deepEqual(desiredForNode(state, 1), [
      {
        id: 2,
        workload: "web",
        specHash: specHash(spec({ env: ["A=1"] })),
        restarts: 4,
        ...templateOf(spec({ env: ["A=1"] })),
      },
    ]);
    assert.deepEqual(desiredForNode(state, 2), []);
  });
});

describe("workload wire form", () => {
  const commands: WorkloadCommand[] = [
    runCommand({ spec: spec({ env: ["A=1", "B=2"] }) }),
    { type: "WorkloadStep", workload: "web", at: 1, stop: [1], place: [2] },
    { type: "WorkloadStop", name: "web", at: 2 },
    report(3, 2, 7, "failed"),
    { type: "AllocationsLost", node: 2, at: 4, replacements: [{ workload: "web", node: 3 }] },
  ];

  test("every command survives CBOR and comes back without unknown fields", () => {
    for (const command of commands) {
      const raw = cbor.decode(cbor.encode({ ...command, extra: "dropped" }));
      assert.deepEqual(parseWorkloadCommand(raw), { ok: true, value: command });
    }
  });

  test("malformed commands are refused naming the field", () => {
    const cases: [unknown, string][] = [
      [{ type: "Nope" }, "type"],
      [null, "type"],
      [{ ...commands[0], at: -1 }, "at"],
      [{ ...commands[0], place: [0] }, "place[0]"],
      [{ ...commands[0], spec: { ...spec(), cpu: 0 } }, "spec.cpu"],
      [{ ...commands[1], workload: "Web" }, "workload"],
      [{ ...commands[3], status: "lost" }, "status"],
      [{ ...commands[3], restarts: -1 }, "restarts"],
      [{ ...commands[4], replacements: [{ workload: "web" }] }, "replacements[0].node"],
    ];
    for (const [raw, field] of cases) {
      const parsed = parseWorkloadCommand(raw);
      assert.equal(parsed.ok, false, JSON.stringify(raw));
      assert.equal(!parsed.ok && parsed.problem.field, field);
    }
  });

  test("snapshots are the same bytes whatever order the state was built in, and restore", () => {
    const build = (order: readonly string[]) => {
      let state: WorkloadState = emptyWorkloadState();
      for (const name of order) {
        state = apply(
          state,
          runCommand({ spec: spec({ name, env: ["Z=1", "A=2"] }), place: [1] }),
          nodes,
        );
      }
      return state;
    };
    const a = build(["web", "api", "db"]);
    const reordered: WorkloadState = {
      workloads: new Map([...a.workloads].reverse()),
      allocations: new Map([...a.allocations].reverse()),
      nextAllocationId: a.nextAllocationId,
    };
    const bytes = hexOf(workloadSnapshot(a));
    assert.equal(hexOf(workloadSnapshot(reordered)), bytes);
    const restored = restoreWorkloadSnapshot(cbor.decode(Buffer.from(bytes, "hex")));
    assert.equal(hexOf(workloadSnapshot(restored)), bytes);
    assert.deepEqual(restored.workloads.get("api"), a.workloads.get("api"));
    assert.deepEqual(restored.allocations, a.allocations);
  });

  test("a malformed snapshot is refused with one line", () => {
    assert.throws(
      () => restoreWorkloadSnapshot({ workloads: 1 }),
      /workload snapshot: workloads\.workloads must be a list/,
    );
    assert.throws(
      () =>
        restoreWorkloadSnapshot({
          workloads: [{ spec: { name: "x" }, previous: [] }],
          allocations: [],
          nextAllocationId: 1,
        }),
      /workload snapshot: /,
    );
  });
});
