import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Command } from "../../../lib/cluster/commands.ts";
import {
  allowed,
  belowCluster,
  COMMAND_SINCE,
  clusterProtocol,
  gateRefusal,
  membersBehind,
  protocolRaise,
  shownBy,
} from "../../../lib/cluster/protocol-gate.ts";
import { PROTOCOL_VERSION, type ProtocolVersion } from "../../../lib/shared/protocol.ts";
import { applied, init, register } from "./fixtures.ts";

const v = (minor: number, major = 1): ProtocolVersion => ({ major, minor });

/** node-1, node-2, node-3 ready; node-4 removed; then `more`. */
function cluster(more: Command[] = []) {
  return applied([
    init(),
    register("node-1", 1),
    register("node-2", 2),
    register("node-3", 3),
    register("node-4", 4),
    { type: "NodeRemove", id: 4, at: 3000 },
    ...more,
  ]).fsm;
}

/** node-1 leads; the others showed these versions in their heartbeats. */
const heard = (versions: Record<number, ProtocolVersion | undefined>) =>
  shownBy(1, (id) => versions[id], v(2));

describe("the cluster protocol", () => {
  test("a state that never committed one (every log before 1.2) speaks the baseline 1.0", () => {
    assert.deepEqual(clusterProtocol(cluster().state), v(0));
  });

  test("each command names the minor that introduced it: the newer ones wait, the rest do not", () => {
    const newer = Object.entries(COMMAND_SINCE)
      .filter(([, minor]) => minor > 0)
      .map(([type]) => type)
      .sort();
    assert.deepEqual(newer, ["ClusterProtocol", "NodeResources", "TokenRotate"]);
    const baseline = cluster().state;
    assert.equal(allowed(baseline, "NodeResources"), false);
    assert.equal(allowed(baseline, "TokenRotate"), false);
    assert.equal(allowed(baseline, "WorkloadRun"), true);
    assert.equal(allowed(baseline, "NodeVersion"), true);
    const raised = cluster([{ type: "ClusterProtocol", major: 1, minor: 2 }]).state;
    assert.equal(allowed(raised, "NodeResources"), true);
    assert.equal(allowed(raised, "TokenRotate"), true);
  });

  test("this build speaks at least every minor the table names", () => {
    const highest = Math.max(...Object.values(COMMAND_SINCE));
    assert.ok(PROTOCOL_VERSION.minor >= highest, `${PROTOCOL_VERSION.minor} < ${highest}`);
  });
});

describe("when the leader raises the cluster protocol", () => {
  const state = cluster().state;

  test("once every member showed 1.2, it commits 1.2; removed nodes do not count", () => {
    assert.deepEqual(protocolRaise(state, heard({ 2: v(2), 3: v(2) })), {
      type: "ClusterProtocol",
      major: 1,
      minor: 2,
    });
  });

  test("to the lowest minor shown, never above it", () => {
    const leader = shownBy(1, (id) => ({ 2: v(3), 3: v(4) })[id], v(5));
    assert.deepEqual(protocolRaise(state, leader), { type: "ClusterProtocol", major: 1, minor: 3 });
  });

  test("not while one member speaks 1.1: ClusterProtocol is itself 1.2, so not even to 1.1", () => {
    assert.equal(protocolRaise(state, heard({ 2: v(2), 3: v(1) })), undefined);
  });

  test("not while a member has shown nothing (the leader has not heard it since it leads)", () => {
    assert.equal(protocolRaise(state, heard({ 2: v(2) })), undefined);
  });

  test("not while a member is down, whatever it showed before", () => {
    const down = cluster([{ type: "NodeDown", id: 3, at: 4000 }]).state;
    assert.equal(protocolRaise(down, heard({ 2: v(2), 3: v(2) })), undefined);
  });

  test("not while a member is still joining", () => {
    const joining = cluster([register("node-5", 5, { joining: true })]).state;
    assert.equal(protocolRaise(joining, heard({ 2: v(2), 3: v(2), 5: v(2) })), undefined);
  });

  test("not past another major, and never again once committed", () => {
    assert.equal(protocolRaise(state, heard({ 2: v(0, 2), 3: v(2) })), undefined);
    const raised = cluster([{ type: "ClusterProtocol", major: 1, minor: 2 }]).state;
    assert.equal(protocolRaise(raised, heard({ 2: v(2), 3: v(2) })), undefined);
    const everyone3 = shownBy(1, () => v(3), v(3));
    assert.equal(protocolRaise(raised, everyone3)?.minor, 3);
  });
});

describe("ClusterProtocol in the state machine", () => {
  test("raises, never lowers, and refuses another major", () => {
    const fsm = cluster([{ type: "ClusterProtocol", major: 1, minor: 3 }]);
    assert.deepEqual(fsm.state.clusterProtocol, v(3));
    const lower = applied([{ type: "ClusterProtocol", major: 1, minor: 2 }], fsm).results[0];
    assert.deepEqual(lower, { ok: true, changed: false });
    const other = applied([{ type: "ClusterProtocol", major: 2, minor: 0 }], fsm).results[0];
    assert.equal(other?.ok, false);
    assert.deepEqual(fsm.state.clusterProtocol, v(3));
  });

  test("a snapshot carries it only once raised, and restores it", () => {
    const before = cluster();
    assert.equal("clusterProtocol" in before.state, false);
    const raised = cluster([{ type: "ClusterProtocol", major: 1, minor: 2 }]);
    assert.notDeepEqual(raised.snapshot(), before.snapshot());
    const restored = cluster();
    restored.restore(raised.snapshot());
    assert.deepEqual(restored.state.clusterProtocol, v(2));
    assert.deepEqual(restored.snapshot(), raised.snapshot());
  });
});

describe("the refusal of a gated command", () => {
  const state = cluster().state;

  test("names each node behind and what to do, in one line", () => {
    const line = gateRefusal(
      "mill token rotate",
      "TokenRotate",
      state,
      heard({ 2: v(1), 3: undefined }),
    );
    assert.equal(
      line,
      "mill token rotate needs protocol 1.2 on every node, and node-2 speaks 1.1, node-3 (ready) has not shown its protocol to the leader: run a mill of protocol 1.2 or later there (or mill remove the node), then try again",
    );
  });

  test("names a down node by its status", () => {
    const down = cluster([{ type: "NodeDown", id: 2, at: 4000 }]).state;
    assert.deepEqual(membersBehind(down, heard({ 2: v(2), 3: v(2) }), v(2)), [
      { name: "node-2", status: "down" },
    ]);
  });

  test("says to wait when every node speaks it but the raise is not committed yet", () => {
    assert.match(
      gateRefusal("mill token rotate", "TokenRotate", state, heard({ 2: v(2), 3: v(2) })) ?? "",
      /^mill token rotate needs protocol 1\.2, which every node speaks but the cluster has not committed yet: try again in a few seconds$/,
    );
  });

  test("is nothing once the cluster speaks it, and nothing for baseline commands", () => {
    const raised = cluster([{ type: "ClusterProtocol", major: 1, minor: 2 }]).state;
    assert.equal(gateRefusal("rotate", "TokenRotate", raised, heard({})), undefined);
    assert.equal(gateRefusal("run", "WorkloadRun", state, heard({})), undefined);
  });
});

describe("a node below the cluster protocol", () => {
  test("is told so, with both versions and what to do; one at or above it, or of a baseline cluster, is not", () => {
    const raised = cluster([{ type: "ClusterProtocol", major: 1, minor: 2 }]).state;
    assert.equal(
      belowCluster(raised, v(1)),
      "this node speaks protocol 1.1, below the cluster's protocol 1.2: run a mill of protocol 1.2 or later on this data dir",
    );
    assert.equal(belowCluster(raised, v(2)), undefined);
    assert.equal(belowCluster(raised, v(3)), undefined);
    assert.equal(belowCluster(cluster().state, v(1)), undefined);
  });
});
