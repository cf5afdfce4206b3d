import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type Command, encodeCbor, encodeCommand } from "../../../lib/cluster/commands.ts";
import { ClusterFsm, type NodeDownHook } from "../../../lib/cluster/fsm.ts";
import { applied, GiB, init, MEMBER_HASH, nodeKey, register, TOKEN_HASH } from "./fixtures.ts";

const three = [init(), register("node-1", 1), register("node-2", 2), register("node-3", 3)];

describe("ClusterInit", () => {
  test("records the configuration, token hash and provider token as a secret", () => {
    const { fsm, results } = applied([
      init({ name: "prod", provider: { name: "digitalocean", token: "do-secret" } }),
    ]);
    assert.deepEqual(results[0], { ok: true, changed: true });
    assert.deepEqual(fsm.state.cluster, {
      id: "c1",
      name: "prod",
      createdAt: 1000,
      mesh: "wireguard",
      meshCidr: "10.99.0.0/16",
      provider: { name: "digitalocean", tokenRef: "provider-token" },
    });
    assert.equal(fsm.state.tokenHash, TOKEN_HASH);
    assert.deepEqual(fsm.state.secrets, { "provider-token": "do-secret" });
  });

  test("a provider without its token (the token stays on the init node) records no secret", () => {
    const { fsm } = applied([init({ provider: { name: "digitalocean" } })]);
    assert.equal(fsm.state.cluster?.provider?.name, "digitalocean");
    assert.deepEqual(fsm.state.secrets, {});
  });

  test("repeating it is a no-op; another cluster id is a conflict", () => {
    const { fsm, results } = applied([init(), init(), init({ clusterId: "other" })]);
    assert.deepEqual(results[1], { ok: true, changed: false });
    assert.equal(results[2]!.ok, false);
    assert.equal(!results[2]!.ok && results[2]!.code, "conflict");
    assert.equal(fsm.state.cluster?.id, "c1");
  });

  test("every other command waits for it", () => {
    const { fsm, results } = applied([register("node-1", 1)]);
    assert.deepEqual(results[0], {
      ok: false,
      code: "uninitialised",
      error: "the cluster is not initialised yet",
    });
    assert.equal(fsm.state.nodes.size, 0);
  });
});

describe("NodeRegister", () => {
  test("assigns ids in order and a mesh address from the cluster range", () => {
    const { fsm, results } = applied(three);
    assert.deepEqual(
      results.slice(1).map((r) => r.ok && [r.node?.id, r.node?.meshAddress, r.node?.status]),
      [
        [1, "10.99.0.1", "ready"],
        [2, "10.99.0.2", "ready"],
        [3, "10.99.0.3", "ready"],
      ],
    );
    assert.equal(fsm.state.nextNodeId, 4);
    assert.equal(fsm.state.peersVersion, 3);
    assert.equal(fsm.state.nodes.get(2)?.joinedAt, 2000);
  });

  test("the same name and key rejoin idempotently: same id, nothing changes", () => {
    const { fsm } = applied(three);
    const before = fsm.snapshot();
    const result = fsm.apply(10, encodeCommand(register("node-2", 2, { at: 9999 })));
    assert.equal(result.ok && result.changed, false);
    assert.equal(result.ok && result.node?.id, 2);
    assert.deepEqual(fsm.snapshot(), before);
  });

  test("a rejoin from a new address keeps id and mesh address and bumps the peer version", () => {
    const { fsm } = applied(three);
    const result = fsm.apply(10, encodeCommand(register("node-2", 2, { advertise: "10.0.0.99" })));
    assert.equal(result.ok && result.changed, true);
    const node = fsm.state.nodes.get(2)!;
    assert.deepEqual([node.id, node.meshAddress, node.advertise], [2, "10.99.0.2", "10.0.0.99"]);
    assert.equal(fsm.state.peersVersion, 4);
  });

  test("a taken name with another key is a conflict naming the fix, and changes nothing", () => {
    const { fsm } = applied(three);
    const before = fsm.snapshot();
    const result = fsm.apply(10, encodeCommand(register("node-2", 9)));
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.code, "conflict");
    assert.equal(!result.ok && result.field, "name");
    assert.match(!result.ok ? result.error : "", /taken by node 2.*pass another --name/);
    assert.deepEqual(fsm.snapshot(), before);
  });

  test("a taken name with its WireGuard key but another node key is a conflict: the node key proves the node", () => {
    const { fsm } = applied(three);
    const before = fsm.snapshot();
    const result = fsm.apply(10, encodeCommand(register("node-2", 2, { nodeKey: nodeKey(9) })));
    assert.equal(!result.ok && result.code, "conflict");
    assert.equal(!result.ok && result.field, "nodeKey");
    assert.match(!result.ok ? result.error : "", /taken by node 2 with another node key/);
    assert.deepEqual(fsm.snapshot(), before);
  });

  test("a node key already used under another name is a conflict", () => {
    const { fsm } = applied(three);
    const result = fsm.apply(10, encodeCommand(register("node-9", 9, { nodeKey: nodeKey(3) })));
    assert.equal(!result.ok && result.field, "nodeKey");
    assert.match(!result.ok ? result.error : "", /already belongs to node 3/);
    assert.equal(fsm.state.nodes.size, 3);
  });

  test("a record logged without a node key takes the key of the node's next rejoin", () => {
    const { fsm } = applied([init(), register("node-1", 1, { nodeKey: undefined })]);
    assert.equal(fsm.state.nodes.get(1)?.nodeKey, undefined);
    const result = fsm.apply(3, encodeCommand(register("node-1", 1)));
    assert.equal(result.ok && result.changed, true);
    assert.equal(fsm.state.nodes.get(1)?.nodeKey, nodeKey(1));
    assert.equal(fsm.state.peersVersion, 2, "peers learn the new key");
  });

  test("a key already used under another name is a conflict", () => {
    const { fsm } = applied(three);
    const result = fsm.apply(10, encodeCommand(register("node-9", 3)));
    assert.equal(!result.ok && result.field, "wgPublicKey");
    assert.equal(fsm.state.nodes.size, 3);
  });

  test("ids are never reused and a departed node's address is not handed out again", () => {
    const { fsm, results } = applied([
      ...three,
      { type: "NodeRemove", id: 3, at: 3000 },
      register("node-3", 3),
      register("node-4", 4),
    ]);
    assert.equal(fsm.state.nodes.get(3)?.status, "left");
    assert.deepEqual(
      results.slice(5).map((r) => r.ok && [r.node?.id, r.node?.meshAddress]),
      [
        [4, "10.99.0.4"],
        [5, "10.99.0.5"],
      ],
    );
  });

  test("only a full range reuses a departed node's address", () => {
    const { results } = applied([
      init({ meshCidr: "10.99.0.0/30" }),
      register("node-1", 1),
      register("node-2", 2),
      { type: "NodeRemove", id: 2, at: 3000 },
      register("node-3", 3),
      register("node-4", 4),
    ]);
    assert.equal(results[4]!.ok && results[4]!.node?.meshAddress, "10.99.0.2");
    assert.equal(results[5]!.ok, false);
    assert.equal(!results[5]!.ok && results[5]!.code, "full");
  });
});

describe("NodeDown, NodeUp, NodeRemove", () => {
  test("NodeDown marks the node down and invokes the rescheduling hook once", () => {
    const calls: [number, string][] = [];
    const followUp: Command = { type: "NodeRemove", id: 99, at: 0 };
    const hook: NodeDownHook = (state, node) => {
      calls.push([node.id, state.nodes.get(node.id)!.status]);
      return [followUp];
    };
    const { fsm, results } = applied(
      [...three, { type: "NodeDown", id: 2, at: 5000 }, { type: "NodeDown", id: 2, at: 6000 }],
      new ClusterFsm({ onNodeDown: hook }),
    );
    assert.deepEqual(calls, [[2, "down"]]);
    assert.deepEqual(results[4]!.ok && results[4]!.followUps, [followUp]);
    assert.equal(results[5]!.ok && results[5]!.changed, false);
    const node = fsm.state.nodes.get(2)!;
    assert.deepEqual([node.status, node.lastStatusChangeAt], ["down", 5000]);
    assert.equal(fsm.state.peersVersion, 3, "a down node keeps its peer entry");
  });

  test("the default hook has nothing to reschedule", () => {
    const { results } = applied([...three, { type: "NodeDown", id: 1, at: 5000 }]);
    assert.deepEqual(results[4]!.ok && results[4]!.followUps, []);
  });

  test("NodeUp brings a down node back; a ready node is unchanged", () => {
    const { fsm, results } = applied([
      ...three,
      { type: "NodeUp", id: 1, at: 4000 },
      { type: "NodeDown", id: 1, at: 5000 },
      { type: "NodeUp", id: 1, at: 6000 },
    ]);
    assert.equal(results[4]!.ok && results[4]!.changed, false);
    assert.equal(results[6]!.ok && results[6]!.changed, true);
    assert.deepEqual(
      [fsm.state.nodes.get(1)!.status, fsm.state.nodes.get(1)!.lastStatusChangeAt],
      ["ready", 6000],
    );
  });

  test("NodeRemove leaves for good: the peer list changes and status commands no longer apply", () => {
    const { fsm, results } = applied([
      ...three,
      { type: "NodeRemove", id: 2, at: 4000 },
      { type: "NodeUp", id: 2, at: 5000 },
      { type: "NodeDown", id: 2, at: 5000 },
    ]);
    assert.equal(fsm.state.nodes.get(2)!.status, "left");
    assert.equal(fsm.state.peersVersion, 4);
    assert.equal(results[5]!.ok && results[5]!.changed, false);
    assert.equal(results[6]!.ok && results[6]!.changed, false);
  });

  test("an unknown node id is refused", () => {
    const { results } = applied([...three, { type: "NodeDown", id: 42, at: 1 }]);
    assert.deepEqual(results[4], { ok: false, code: "unknown-node", error: "there is no node 42" });
  });
});

describe("NodeDrain, NodeUndrain", () => {
  test("draining is kept through NodeDown and NodeUp; undrain clears it", () => {
    const { fsm, results } = applied([
      ...three,
      { type: "NodeDrain", id: 2, at: 4000 },
      { type: "NodeDrain", id: 2, at: 4001 },
      { type: "NodeDown", id: 2, at: 5000 },
      { type: "NodeUp", id: 2, at: 6000 },
    ]);
    assert.deepEqual(
      results.slice(4).map((r) => r.ok && r.changed),
      [true, false, true, true],
    );
    const node = fsm.state.nodes.get(2)!;
    assert.deepEqual([node.status, node.draining, node.lastStatusChangeAt], ["ready", true, 6000]);
    assert.equal(fsm.state.peersVersion, 3, "draining changes no peer");
    const undrained = fsm.apply(9, encodeCommand({ type: "NodeUndrain", id: 2, at: 7000 }));
    assert.equal(undrained.ok && undrained.changed, true);
    assert.equal("draining" in fsm.state.nodes.get(2)!, false);
    const again = fsm.apply(10, encodeCommand({ type: "NodeUndrain", id: 2, at: 7001 }));
    assert.equal(again.ok && again.changed, false);
  });

  test("a snapshot keeps the flag; a node never drained has no such field", () => {
    const { fsm } = applied([...three, { type: "NodeDrain", id: 3, at: 4000 }]);
    const restored = new ClusterFsm();
    restored.restore(fsm.snapshot());
    assert.equal(restored.state.nodes.get(3)!.draining, true);
    assert.equal("draining" in restored.state.nodes.get(1)!, false);
  });

  test("an unknown or removed node is refused", () => {
    const { results } = applied([
      ...three,
      { type: "NodeDrain", id: 42, at: 1 },
      { type: "NodeRemove", id: 3, at: 2 },
      { type: "NodeDrain", id: 3, at: 3 },
    ]);
    assert.equal(!results[4]!.ok && results[4]!.code, "unknown-node");
    assert.equal(!results[6]!.ok && results[6]!.code, "unknown-node");
  });
});

describe("NodeResources", () => {
  const measured = { cores: 2, memoryBytes: 3 * GiB };
  test("replaces the registration's claim; the same figures again change nothing", () => {
    const { fsm, results } = applied([
      ...three,
      { type: "NodeResources", id: 2, resources: measured },
      { type: "NodeResources", id: 2, resources: measured },
    ]);
    assert.deepEqual(fsm.state.nodes.get(2)?.resources, measured);
    assert.equal(results[4]!.ok && results[4]!.changed, true);
    assert.equal(results[5]!.ok && results[5]!.changed, false);
    const peersBefore = applied(three).fsm.state.peersVersion;
    assert.equal(fsm.state.peersVersion, peersBefore, "the peer list does not change");
  });

  test("a rejoin claims again, until the next measurement", () => {
    const { fsm } = applied([
      ...three,
      { type: "NodeResources", id: 2, resources: measured },
      register("node-2", 2, { resources: { cores: 4096, memoryBytes: 64 * 1024 * GiB } }),
    ]);
    assert.equal(fsm.state.nodes.get(2)?.resources.cores, 4096);
  });

  test("an unknown or removed node is refused", () => {
    const { results } = applied([
      ...three,
      { type: "NodeResources", id: 42, resources: measured },
      { type: "NodeRemove", id: 3, at: 2 },
      { type: "NodeResources", id: 3, resources: measured },
    ]);
    assert.equal(!results[4]!.ok && results[4]!.code, "unknown-node");
    assert.equal(!results[6]!.ok && results[6]!.code, "unknown-node");
  });
});

describe("TokenRotate", () => {
  test("replaces the token hash", () => {
    const rotated = "c".repeat(64);
    const { fsm, results } = applied([init(), { type: "TokenRotate", tokenHash: rotated }]);
    assert.equal(fsm.state.tokenHash, rotated);
    assert.equal(results[1]!.ok && results[1]!.changed, true);
    assert.equal("tlsFingerprint" in fsm.state, false, "an entry without one leaves it absent");
  });

  test("commits the new identity's fingerprint, which snapshots carry and older states omit", () => {
    const before = applied([init()]).fsm.snapshot();
    const fingerprint = "f".repeat(32);
    const rotation: Command = { type: "TokenRotate", tokenHash: "c".repeat(64), fingerprint };
    const { fsm } = applied([init(), rotation]);
    assert.equal(fsm.state.tlsFingerprint, fingerprint);
    const copy = new ClusterFsm();
    copy.restore(fsm.snapshot());
    assert.equal(copy.state.tlsFingerprint, fingerprint);
    const plain = applied([init(), { type: "TokenRotate", tokenHash: "c".repeat(64) }]).fsm;
    assert.equal(new TextDecoder().decode(before).includes("tlsFingerprint"), false);
    assert.equal(new TextDecoder().decode(plain.snapshot()).includes("tlsFingerprint"), false);
    assert.equal(new TextDecoder().decode(fsm.snapshot()).includes("tlsFingerprint"), true);
    // A later rotation logged without a fingerprint keeps the one committed before.
    fsm.apply(3, encodeCommand({ type: "TokenRotate", tokenHash: "d".repeat(64) }));
    assert.equal(fsm.state.tlsFingerprint, fingerprint);
  });

  test("refuses a fingerprint that is not 32 base32 characters", () => {
    const bad = encodeCbor({ type: "TokenRotate", tokenHash: "c".repeat(64), fingerprint: "XY" });
    const result = new ClusterFsm().apply(1, bad);
    assert.equal(result.ok, false);
    assert.match(!result.ok ? result.error : "", /fingerprint is not a certificate fingerprint/);
  });
});

describe("malformed commands", () => {
  const cases: [string, Uint8Array, string][] = [
    ["not CBOR", new Uint8Array([0xff, 0x00]), "command"],
    ["no type", encodeCbor({ id: 1 }), "type"],
    ["unknown type", encodeCbor({ type: "Explode" }), "type"],
    ["a bad field", encodeCbor({ ...register("node-1", 1), apiPort: 0 }), "apiPort"],
    [
      "a bad nested field",
      encodeCbor({ ...register("node-1", 1), resources: { cores: -1 } }),
      "resources.cores",
    ],
    [
      "resources beyond the bounds",
      encodeCbor({ type: "NodeResources", id: 1, resources: { cores: 4097, memoryBytes: 1 } }),
      "resources.cores",
    ],
    ["a bad key", encodeCbor({ ...register("node-1", 1), wgPublicKey: "abc" }), "wgPublicKey"],
    ["a string id", encodeCbor({ type: "NodeDown", id: "1", at: 0 }), "id"],
  ];
  for (const [what, bytes, field] of cases) {
    test(`${what} is refused on apply, naming ${field}, without changing state`, () => {
      const { fsm } = applied(three);
      const before = fsm.snapshot();
      const result = fsm.apply(10, bytes);
      assert.equal(result.ok, false);
      assert.equal(!result.ok && result.code, "invalid");
      assert.equal(!result.ok && result.field, field);
      assert.deepEqual(fsm.snapshot(), before);
    });
  }
});

describe("snapshot and restore", () => {
  const history: Command[] = [
    init({ provider: { name: "digitalocean", token: "do-secret" } }),
    register("node-1", 1),
    register("node-2", 2),
    register("node-3", 3, { memberSecretHash: MEMBER_HASH.replace("b", "c") }),
    { type: "NodeDown", id: 2, at: 5000 },
    { type: "NodeRemove", id: 3, at: 6000 },
  ];

  test("round trip restores the same state and the same bytes", () => {
    const { fsm } = applied(history);
    const copy = new ClusterFsm();
    copy.restore(fsm.snapshot());
    assert.deepEqual(copy.state, fsm.state);
    assert.deepEqual(copy.snapshot(), fsm.snapshot());
    assert.equal(copy.apply(7, encodeCommand(register("node-4", 4))).ok, true);
    assert.equal(copy.state.nodes.get(4)?.meshAddress, "10.99.0.4");
  });

  test("two nodes with the same history produce byte-identical snapshots", () => {
    assert.deepEqual(applied(history).fsm.snapshot(), applied(history).fsm.snapshot());
  });

  test("an empty state round-trips too", () => {
    const copy = new ClusterFsm();
    copy.restore(new ClusterFsm().snapshot());
    assert.equal(copy.state.cluster, undefined);
    assert.equal(copy.state.nextNodeId, 1);
  });

  test("bytes that are not a snapshot are refused with a clear error and nothing changes", () => {
    const { fsm } = applied(history);
    const before = fsm.snapshot();
    assert.throws(() => fsm.restore(new Uint8Array([0xff])), /not valid CBOR/);
    assert.throws(() => fsm.restore(encodeCbor({ v: 1 })), /format 1, expected 2/);
    const damaged = encodeCbor({
      v: 2,
      cluster: null,
      tokenHash: "",
      secrets: [],
      nodes: [{ id: 1, name: "Bad Name" }],
      nextNodeId: 2,
      peersVersion: 1,
    });
    assert.throws(() => fsm.restore(damaged), /nodes\[0\]\.name/);
    assert.deepEqual(fsm.snapshot(), before);
  });

  test("the state is a stable read-only view: applying replaces it instead of mutating it", () => {
    const { fsm } = applied(three);
    const view = fsm.state;
    fsm.apply(10, encodeCommand({ type: "NodeDown", id: 1, at: 1 }));
    assert.equal(view.nodes.get(1)?.status, "ready");
    assert.equal(fsm.state.nodes.get(1)?.status, "down");
  });
});
