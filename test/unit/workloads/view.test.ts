import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseWorkloadCommand } from "../../../lib/workloads/commands.ts";
import { emptyWorkloadState } from "../../../lib/workloads/state.ts";
import { formatPs, psRows, startupTrouble, statusText } from "../../../lib/workloads/view.ts";
import { apply, nodesOf, run, settle, spec, startAll, withStatus } from "./fixtures.ts";

describe("mill ps", () => {
  test("one row per allocation with node names, rendered as a table", () => {
    const nodes = nodesOf({ id: 1 }, { id: 2 });
    let state = run(
      emptyWorkloadState(),
      nodes,
      spec({ replicas: 2, cpu: 0.5, memory: "1G" }),
      1_000,
    );
    state = apply(
      state,
      { type: "AllocationStatus", id: 1, node: 1, status: "running", restarts: 3, at: 2_000 },
      nodes,
    );
    const down = withStatus(nodes, 2, "down");
    state = apply(state, { type: "AllocationsLost", node: 2, at: 3_000, replacements: [] }, down);
    const rows = psRows(state, new Map([[1, nodes.get(1)!]]));
    assert.deepEqual(
      rows.map((row) => [row.id, row.name, row.node, row.status, row.restarts]),
      [
        [1, "web", "node-1", "running", 3],
        [2, "web", "2", "lost", 0],
      ],
    );
    assert.equal(
      formatPs(rows, 96_000),
      [
        "ID  NAME  NODE    STATUS   CPU  MEM  AGE    RESTARTS",
        "1   web   node-1  running  0.5  1G   1m35s  3",
        "2   web   2       lost     0.5  1G   1m35s  0",
      ].join("\n"),
    );
    assert.equal(formatPs([], 0), "No allocations");
  });
});

describe("workload truth", () => {
  const nodes = nodesOf({ id: 1 }, { id: 2 });

  test("a crash loop is failing with its exit code and next restart; a start error is failed with its reason", () => {
    let state = run(emptyWorkloadState(), nodes, spec({ replicas: 2 }), 1_000);
    state = apply(
      state,
      {
        type: "AllocationStatus",
        id: 1,
        node: 1,
        status: "failing",
        restarts: 2,
        at: 2_000,
        exitCode: 1,
        restartAt: 9_000,
      },
      nodes,
    );
    const reason = "ENOSPC: no space left on device, write";
    state = apply(
      state,
      {
        type: "AllocationStatus",
        id: 2,
        node: 2,
        status: "failed",
        restarts: 0,
        at: 2_000,
        reason,
        restartAt: 3_000,
      },
      nodes,
    );
    const rows = psRows(state, nodes);
    assert.deepEqual(
      rows.map((row) => statusText(row, 4_000)),
      ["failing (exit 1, restart in 5s)", `failed (${reason}, retrying)`],
    );
    const hash = rows[0]!.specHash;
    assert.equal(
      startupTrouble(rows, hash, 4_000),
      `allocation 1 on node-1 exited with code 1 (next try in 5s); allocation 2 on node-2 cannot start: ${reason}`,
    );
    assert.equal(startupTrouble(rows, "another-spec", 4_000), undefined);
    assert.match(formatPs(rows, 4_000), /failing \(exit 1, restart in 5s\)/);
    // Running again: the row says running, and nothing is in trouble.
    state = apply(
      state,
      { type: "AllocationStatus", id: 1, node: 1, status: "running", restarts: 3, at: 20_000 },
      nodes,
    );
    const again = psRows(state, nodes)[0]!;
    assert.deepEqual(
      [again.status, again.exitCode, again.restartAt],
      ["running", undefined, undefined],
    );
    assert.equal(
      statusText({ ...again, status: "failing", signal: "SIGKILL" }, 0),
      "failing (SIGKILL, restarting)",
    );
  });

  test("a lost row ages out once its replacement runs", () => {
    const three = nodesOf({ id: 1 }, { id: 2 }, { id: 3 });
    let state = settle(run(emptyWorkloadState(), three, spec({ replicas: 2 })), three);
    const down = withStatus(three, 2, "down");
    const lostId = [...state.allocations.values()].find((a) => a.node === 2)!.id;
    state = apply(
      state,
      { type: "AllocationsLost", node: 2, at: 5_000, replacements: [{ workload: "web", node: 3 }] },
      down,
    );
    assert.equal(
      state.allocations.get(lostId)?.status,
      "lost",
      "shown while its replacement starts",
    );
    state = startAll(state, down, 6_000);
    assert.equal(state.allocations.has(lostId), false, "gone once the replacement runs");
    assert.equal(psRows(state, down).length, 2);
  });

  test("a report's reason must be printable: a workload's error cannot drive the operator's terminal", () => {
    const base = { type: "AllocationStatus", id: 1, node: 1, status: "failed", restarts: 0, at: 1 };
    assert.equal(parseWorkloadCommand({ ...base, reason: "ENOSPC" }).ok, true);
    for (const reason of ["\u001b[2Jgone", "", "x".repeat(301), "a\nb"]) {
      const parsed = parseWorkloadCommand({ ...base, reason });
      assert.equal(parsed.ok, false, JSON.stringify(reason));
    }
    assert.equal(parseWorkloadCommand({ ...base, exitCode: 256 }).ok, false);
    assert.equal(parseWorkloadCommand({ ...base, signal: "KILL; rm" }).ok, false);
  });
});
