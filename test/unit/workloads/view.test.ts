import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { emptyWorkloadState } from "../../../lib/workloads/state.ts";
import { formatPs, psRows } from "../../../lib/workloads/view.ts";
import { apply, nodesOf, run, spec, withStatus } from "./fixtures.ts";

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
