import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type Command, encodeCommand } from "../../../lib/cluster/commands.ts";
import { ClusterFsm } from "../../../lib/cluster/fsm.ts";
import type { PeerEntry } from "../../../lib/cluster/views.ts";
import { MemberKeys } from "../../../lib/node/member-keys.ts";
import { init, nodeKey, register } from "../cluster/fixtures.ts";

function fsmWith(commands: readonly Command[]): ClusterFsm {
  const fsm = new ClusterFsm();
  commands.forEach((command, i) => {
    fsm.apply(i + 1, encodeCommand(command));
  });
  return fsm;
}

const peer = (id: number, key: string, status: PeerEntry["status"] = "ready"): PeerEntry => ({
  id,
  name: `node-${id}`,
  status,
  advertise: `10.0.0.${id}`,
  apiPort: 4400,
  raftPort: 4401,
  raftAddress: `10.0.0.${id}:4401`,
  meshAddress: `10.99.0.${id}`,
  wgPublicKey: "x",
  wgPort: 4400,
  nodeKey: key,
});

describe("MemberKeys", () => {
  test("a current member's key names it; an unknown key names nobody", () => {
    const fsm = fsmWith([init(), register("node-1", 1), register("node-2", 2)]);
    const keys = new MemberKeys(() => fsm.state);
    assert.equal(keys.nodeOf(nodeKey(2)), 2);
    assert.equal(keys.nodeOf(nodeKey(7)), undefined);
    assert.equal(keys.isMember(2), true);
    assert.equal(keys.isMember(7), false);
  });

  test("a removed node's key stops working as soon as the removal is applied", () => {
    const fsm = fsmWith([init(), register("node-1", 1), register("node-2", 2)]);
    const keys = new MemberKeys(() => fsm.state, [peer(2, nodeKey(2))]);
    fsm.apply(4, encodeCommand({ type: "NodeRemove", id: 2, at: 3000 }));
    assert.equal(keys.nodeOf(nodeKey(2)), undefined);
    assert.equal(keys.isMember(2), false, "a peer list cannot bring back a node the log removed");
  });

  test("before the log knows a member, the join answer's peers vouch for it", () => {
    const fsm = new ClusterFsm();
    const keys = new MemberKeys(
      () => fsm.state,
      [peer(1, nodeKey(1)), peer(3, nodeKey(3), "left")],
    );
    assert.equal(keys.nodeOf(nodeKey(1)), 1);
    assert.equal(keys.isMember(1), true);
    assert.equal(keys.nodeOf(nodeKey(3)), undefined, "a departed peer vouches for nothing");
    keys.learn([peer(4, nodeKey(4))]);
    assert.equal(keys.nodeOf(nodeKey(4)), 4);
  });

  test("once the log has a record, the record decides, not a learned key", () => {
    const fsm = fsmWith([init(), register("node-1", 1)]);
    const keys = new MemberKeys(() => fsm.state, [peer(1, nodeKey(9))]);
    assert.equal(keys.nodeOf(nodeKey(9)), undefined);
    assert.equal(keys.nodeOf(nodeKey(1)), 1);
  });
});
