import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { resourceChanges, shouldCommitResources } from "../../../lib/cluster/resources.ts";
import type { NodeRecord } from "../../../lib/cluster/state.ts";
import { MAX_CORES, MAX_MEMORY_BYTES, parseResources } from "../../../lib/cluster/validate.ts";
import { applied, GiB, init, register } from "./fixtures.ts";

/** node-1 and node-2 registered claiming 4 cores and 8 GiB each; node-3 removed. */
function state() {
  return applied([
    init(),
    register("node-1", 1),
    register("node-2", 2),
    register("node-3", 3),
    { type: "NodeRemove", id: 3, at: 3000 },
  ]).fsm.state;
}

describe("the resources a heartbeat measured", () => {
  const claimed = () => state().nodes.get(2) as NodeRecord;

  test("are committed when they differ from the record, and not when they are the same", () => {
    assert.equal(shouldCommitResources(claimed(), { cores: 2, memoryBytes: 8 * GiB }), true);
    assert.equal(shouldCommitResources(claimed(), { cores: 4, memoryBytes: 7 * GiB }), true);
    assert.equal(shouldCommitResources(claimed(), { cores: 4, memoryBytes: 8 * GiB }), false);
    assert.equal(shouldCommitResources(claimed(), undefined), false, "a heartbeat without them");
  });

  test("are never committed beyond the bounds a registration has", () => {
    for (const beyond of [
      { cores: MAX_CORES + 1, memoryBytes: GiB },
      { cores: 0, memoryBytes: GiB },
      { cores: 1.5, memoryBytes: GiB },
      { cores: 2, memoryBytes: MAX_MEMORY_BYTES + 1 },
      { cores: 2, memoryBytes: 0 },
    ]) {
      assert.equal(shouldCommitResources(claimed(), beyond), false, JSON.stringify(beyond));
    }
    assert.equal(shouldCommitResources(claimed(), { cores: MAX_CORES, memoryBytes: GiB }), true);
  });

  test("of a removed node are not committed", () => {
    const removed = state().nodes.get(3) as NodeRecord;
    assert.equal(shouldCommitResources(removed, { cores: 1, memoryBytes: GiB }), false);
  });

  test("become one command per node whose report differs, in id order", () => {
    const reports = new Map([
      [2, { cores: 2, memoryBytes: 3 * GiB }],
      [1, { cores: 1, memoryBytes: GiB }],
      [3, { cores: 1, memoryBytes: GiB }],
    ]);
    assert.deepEqual(
      resourceChanges(state(), (id) => reports.get(id)),
      [
        { type: "NodeResources", id: 1, resources: { cores: 1, memoryBytes: GiB } },
        { type: "NodeResources", id: 2, resources: { cores: 2, memoryBytes: 3 * GiB } },
      ],
    );
  });
});

describe("parseResources, for what crosses the network", () => {
  test("keeps exactly the two bounded fields and refuses anything else", () => {
    assert.deepEqual(parseResources({ cores: 2, memoryBytes: GiB, extra: 1 }), {
      cores: 2,
      memoryBytes: GiB,
    });
    for (const bad of [
      undefined,
      null,
      "2 cores",
      { cores: 2 },
      { cores: "2", memoryBytes: GiB },
      { cores: 1_000_000, memoryBytes: GiB },
      { cores: 2, memoryBytes: 2 ** 60 },
    ]) {
      assert.equal(parseResources(bad), undefined, JSON.stringify(bad));
    }
  });
});
