/**
 * The Raft log's bytes do not change: every command kind, built the way its proposer builds it,
 * encodes to the bytes Mill wrote before its commands were declared as schemas, decodes back to
 * the same command, and the whole log replays to the same state. Existing data dirs depend on it.
 * Owns: the golden bytes. If one of them must change, the log needs a versioned migration first.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import { type Command, decodeCommand, encodeCommand } from "../../../lib/cluster/commands.ts";
import { ClusterFsm } from "../../../lib/cluster/fsm.ts";
import { GiB, MEMBER_HASH, publicKey, TOKEN_HASH } from "./fixtures.ts";

const spec = {
  name: "web",
  replicas: 2,
  cpu: 0.5,
  memoryBytes: 256 * 1024 ** 2,
  env: ["A=1", "B=two"],
  command: ["sleep", "3600"],
};

/** [what, the command in its proposer's key order, its bytes as hex]; applied in this order. */
const LOG: readonly (readonly [string, Command, string])[] = [
  [
    "ClusterInit from `mill init` (lib/node/init.ts), with a provider",
    {
      type: "ClusterInit",
      clusterId: "0f1e2d3c4b5a6978",
      createdAt: 1_700_000_000_000,
      mesh: "wireguard",
      meshCidr: "10.99.0.0/16",
      tokenHash: TOKEN_HASH,
      provider: { name: "digitalocean", token: "do-secret" },
    },
    "b9000764747970656b436c7573746572496e697469636c75737465724964703066316532643363346235613639373869637265617465644174fb4278bcfe56800000646d65736869776972656775617264686d657368436964726c31302e39392e302e302f313669746f6b656e486173687840616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616870726f7669646572b90002646e616d656c6469676974616c6f6365616e65746f6b656e69646f2d736563726574",
  ],
  [
    "NodeRegister from init or POST /v1/join (the registration's declared order, then at)",
    {
      type: "NodeRegister",
      name: "node-1",
      advertise: "10.0.0.1",
      apiPort: 4400,
      raftPort: 4401,
      wgPort: 4400,
      wgPublicKey: publicKey(1),
      resources: { cores: 4, memoryBytes: 8 * GiB },
      memberSecretHash: MEMBER_HASH,
      at: 1_700_000_000_001,
    },
    "b9000a64747970656c4e6f64655265676973746572646e616d65666e6f64652d31696164766572746973656831302e302e302e3167617069506f72741911306872616674506f7274191131667767506f72741911306b77675075626c69634b6579782c704f43536b725a52776e6935647978576e312b707578505a42725271746f79642b64777252416e346f676b3d697265736f7572636573b9000265636f726573046b6d656d6f72794279746573fb4200000000000000706d656d62657253656372657448617368784062626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626174fb4278bcfe56801000",
  ],
  [
    "NodeRegister of a second node",
    {
      type: "NodeRegister",
      name: "node-2",
      advertise: "2001:db8::2",
      apiPort: 4400,
      raftPort: 4401,
      wgPort: 51820,
      wgPublicKey: publicKey(2),
      resources: { cores: 2, memoryBytes: 4 * GiB },
      memberSecretHash: "c".repeat(64),
      at: 1_700_000_000_002,
    },
    "b9000a64747970656c4e6f64655265676973746572646e616d65666e6f64652d32696164766572746973656b323030313a6462383a3a3267617069506f72741911306872616674506f7274191131667767506f727419ca6c6b77675075626c69634b6579782c7a6f3036306379324d2b7837634d4634464b5848627330436c6f55464454524852626f466877355966566b3d697265736f7572636573b9000265636f726573026b6d656d6f72794279746573fb41f0000000000000706d656d62657253656372657448617368784063636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363626174fb4278bcfe56802000",
  ],
  [
    "WorkloadRun from POST /v1/workloads (planRun: the request's spec, then its first step)",
    { type: "WorkloadRun", spec, at: 1_700_000_000_003, stop: [], place: [1, 2] },
    "b9000564747970656b576f726b6c6f616452756e6473706563b90006646e616d6563776562687265706c696361730263637075fb3fe00000000000006b6d656d6f727942797465731a1000000063656e768263413d3165423d74776f67636f6d6d616e648265736c6565706433363030626174fb4278bcfe568030006473746f708065706c616365820102",
  ],
  [
    "AllocationStatus reported by the leader's own node (lib/node/workloads.ts)",
    {
      type: "AllocationStatus",
      node: 1,
      at: 1_700_000_000_004,
      id: 1,
      status: "running",
      restarts: 0,
    },
    "b90006647479706570416c6c6f636174696f6e537461747573646e6f646501626174fb4278bcfe5680400062696401667374617475736772756e6e696e6768726573746172747300",
  ],
  [
    "AllocationStatus from POST /v1/internal/allocation-status (the parser's order)",
    {
      type: "AllocationStatus",
      id: 2,
      node: 2,
      status: "failed",
      restarts: 3,
      at: 1_700_000_000_005,
    },
    "b90006647479706570416c6c6f636174696f6e53746174757362696402646e6f64650266737461747573666661696c656468726573746172747303626174fb4278bcfe56805000",
  ],
  [
    "WorkloadStep from the leader's reconcile (planReconcile)",
    { type: "WorkloadStep", workload: "web", at: 1_700_000_000_006, stop: [2], place: [1] },
    "b9000564747970656c576f726b6c6f61645374657068776f726b6c6f616463776562626174fb4278bcfe568060006473746f70810265706c6163658101",
  ],
  [
    "NodeDown from the watchdog (lib/cluster/health.ts)",
    { type: "NodeDown", id: 2, at: 1_700_000_000_007 },
    "b900036474797065684e6f6465446f776e62696402626174fb4278bcfe56807000",
  ],
  [
    "AllocationsLost, NodeDown's follow-up (planNodeDown)",
    {
      type: "AllocationsLost",
      node: 2,
      at: 1_700_000_000_008,
      replacements: [{ workload: "web", node: 1 }],
    },
    "b9000464747970656f416c6c6f636174696f6e734c6f7374646e6f646502626174fb4278bcfe568080006c7265706c6163656d656e747381b9000268776f726b6c6f616463776562646e6f646501",
  ],
  [
    "NodeUp from the watchdog",
    { type: "NodeUp", id: 2, at: 1_700_000_000_009 },
    "b900036474797065664e6f6465557062696402626174fb4278bcfe56809000",
  ],
  [
    "TokenRotate from POST /v1/token/rotate",
    { type: "TokenRotate", tokenHash: "d".repeat(64) },
    "b9000264747970656b546f6b656e526f7461746569746f6b656e48617368784064646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464",
  ],
  [
    "WorkloadStop from DELETE /v1/workloads/NAME",
    { type: "WorkloadStop", name: "web", at: 1_700_000_000_010 },
    "b9000364747970656c576f726b6c6f616453746f70646e616d6563776562626174fb4278bcfe5680a000",
  ],
  [
    "NodeRemove",
    { type: "NodeRemove", id: 2, at: 1_700_000_000_011 },
    "b9000364747970656a4e6f646552656d6f766562696402626174fb4278bcfe5680b000",
  ],
  [
    "ClusterInit as a repeat with an optional cluster name and no provider",
    {
      type: "ClusterInit",
      clusterId: "0f1e2d3c4b5a6978",
      name: "prod",
      createdAt: 1_700_000_000_000,
      mesh: "wireguard",
      meshCidr: "10.99.0.0/16",
      tokenHash: TOKEN_HASH,
    },
    "b9000764747970656b436c7573746572496e697469636c757374657249647030663165326433633462356136393738646e616d656470726f6469637265617465644174fb4278bcfe56800000646d65736869776972656775617264686d657368436964726c31302e39392e302e302f313669746f6b656e48617368784061616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161",
  ],
];

/**
 * Kinds added after the golden log was captured, with the bytes their first release wrote. Applied
 * after LOG, in this order, the first two leave its state as it was (a drain undone), so the
 * digest below still holds there; the next records node 1's version, then its measured
 * resources, and the last raises the cluster protocol.
 */
const ADDED: readonly (readonly [string, Command, string])[] = [
  [
    "NodeDrain from POST /v1/nodes/NAME/drain",
    { type: "NodeDrain", id: 1, at: 1_700_000_000_012 },
    "b900036474797065694e6f6465447261696e62696401626174fb4278bcfe5680c000",
  ],
  [
    "NodeUndrain from POST /v1/nodes/NAME/undrain",
    { type: "NodeUndrain", id: 1, at: 1_700_000_000_013 },
    "b9000364747970656b4e6f6465556e647261696e62696401626174fb4278bcfe5680d000",
  ],
  [
    "NodeVersion from POST /v1/internal/version",
    { type: "NodeVersion", id: 1, version: "0.2.0" },
    "b9000364747970656b4e6f646556657273696f6e626964016776657273696f6e65302e322e30",
  ],
  [
    "NodeResources from the watchdog (a node's heartbeats)",
    { type: "NodeResources", id: 1, resources: { cores: 2, memoryBytes: 4 * GiB } },
    "b9000364747970656d4e6f64655265736f757263657362696401697265736f7572636573b9000265636f726573026b6d656d6f72794279746573fb41f0000000000000",
  ],
  [
    "ClusterProtocol from the watchdog (every member showed 1.2)",
    { type: "ClusterProtocol", major: 1, minor: 2 },
    "b9000364747970656f436c757374657250726f746f636f6c656d616a6f7201656d696e6f7202",
  ],
];

/** sha256 of the state after replaying LOG, and every apply() answer, from before the change. */
const REPLAYED_STATE_SHA256 = "c23f6b11ebd10c23a3cae6d45b1873dcc1f13239e50367a1ba0c7078505686f7";
const REPLAYED_RESULTS_SHA256 = "d0afc64f1f4c451d46081cc882656bac4d3ff704398aa0bef80c629f7d5172f1";

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
const sha256 = (data: string | Uint8Array) => createHash("sha256").update(data).digest("hex");
/** JSON with keys sorted, so answers compare by value whatever order their fields were set in. */
const canonical = (value: unknown): string =>
  JSON.stringify(value, (_, inner) =>
    inner && typeof inner === "object" && !Array.isArray(inner)
      ? Object.fromEntries(Object.entries(inner).sort(([a], [b]) => (a < b ? -1 : 1)))
      : inner,
  );

describe("the Raft log's wire format", () => {
  test("covers every command kind", () => {
    const kinds = new Set([...LOG, ...ADDED].map(([, command]) => command.type));
    assert.deepEqual([...kinds].sort(), [
      "AllocationStatus",
      "AllocationsLost",
      "ClusterInit",
      "ClusterProtocol",
      "NodeDown",
      "NodeDrain",
      "NodeRegister",
      "NodeRemove",
      "NodeResources",
      "NodeUndrain",
      "NodeUp",
      "NodeVersion",
      "TokenRotate",
      "WorkloadRun",
      "WorkloadStep",
      "WorkloadStop",
    ]);
  });

  for (const [what, command, golden] of [...LOG, ...ADDED]) {
    test(`${what}: the same bytes, decoded back to the same command`, () => {
      assert.equal(hex(encodeCommand(command)), golden);
      const decoded = decodeCommand(Buffer.from(golden, "hex"));
      assert.ok(decoded.ok, JSON.stringify(decoded));
      assert.deepEqual(decoded.value, command);
    });
  }

  test("the old log replays to the same state and the same answers; its snapshot restores", () => {
    const fsm = new ClusterFsm();
    const results = LOG.map(([, , golden], i) => fsm.apply(i + 1, Buffer.from(golden, "hex")));
    assert.equal(sha256(canonical(results)), REPLAYED_RESULTS_SHA256);
    assert.equal(sha256(fsm.snapshot()), REPLAYED_STATE_SHA256);
    const restored = new ClusterFsm();
    restored.restore(fsm.snapshot());
    assert.equal(sha256(restored.snapshot()), REPLAYED_STATE_SHA256, "a snapshot restores as is");
    const added = ADDED.map(([, , golden], i) => {
      const result = fsm.apply(LOG.length + i + 1, Buffer.from(golden, "hex"));
      if (i === 1) {
        assert.equal(
          sha256(fsm.snapshot()),
          REPLAYED_STATE_SHA256,
          "a drain undone leaves no trace",
        );
      }
      return result.ok && result.changed;
    });
    assert.deepEqual(added, [true, true, true, true, true]);
    assert.equal(fsm.state.nodes.get(1)?.version, "0.2.0");
    assert.deepEqual(fsm.state.clusterProtocol, { major: 1, minor: 2 });
    assert.deepEqual(fsm.state.nodes.get(1)?.resources, { cores: 2, memoryBytes: 4 * GiB });
  });
});

/**
 * Registrations since nodes have their own keys: the same fields with `nodeKey` last. The older
 * bytes above still decode (their records have no key), so logs written before stay readable.
 */
const KEYED_REGISTER: Command = {
  type: "NodeRegister",
  name: "node-3",
  advertise: "10.0.0.3",
  apiPort: 4400,
  raftPort: 4401,
  wgPort: 4400,
  wgPublicKey: publicKey(3),
  resources: { cores: 2, memoryBytes: 4 * GiB },
  memberSecretHash: MEMBER_HASH,
  nodeKey: "abcdefghijklmnopqrstuvwxyz234567",
  at: 1_700_000_000_012,
};
const KEYED_REGISTER_HEX =
  "b9000b64747970656c4e6f64655265676973746572646e616d65666e6f64652d33696164766572746973656831302e302e302e3367617069506f72741911306872616674506f7274191131667767506f72741911306b77675075626c69634b6579782c586637644f32765566322b696a7546646c703162734f70546430314969397235337878754153537a3779493d697265736f7572636573b9000265636f726573026b6d656d6f72794279746573fb41f0000000000000706d656d62657253656372657448617368784062626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262676e6f64654b657978206162636465666768696a6b6c6d6e6f707172737475767778797a323334353637626174fb4278bcfe5680c000";

describe("the Raft log's wire format, version 2 of NodeRegister (with the node key)", () => {
  test("the same bytes, decoded back to the same command", () => {
    assert.equal(hex(encodeCommand(KEYED_REGISTER)), KEYED_REGISTER_HEX);
    const decoded = decodeCommand(Buffer.from(KEYED_REGISTER_HEX, "hex"));
    assert.ok(decoded.ok, JSON.stringify(decoded));
    assert.deepEqual(decoded.value, KEYED_REGISTER);
  });

  test("applied after the old log, the key is in the record and survives a snapshot", () => {
    const fsm = new ClusterFsm();
    for (const [i, [, , golden]] of LOG.entries()) fsm.apply(i + 1, Buffer.from(golden, "hex"));
    const result = fsm.apply(LOG.length + 1, Buffer.from(KEYED_REGISTER_HEX, "hex"));
    assert.ok(result.ok && result.changed);
    const restored = new ClusterFsm();
    restored.restore(fsm.snapshot());
    const record = [...restored.state.nodes.values()].find((node) => node.name === "node-3");
    assert.equal(record?.nodeKey, "abcdefghijklmnopqrstuvwxyz234567");
    assert.equal(sha256(restored.snapshot()), sha256(fsm.snapshot()));
  });
});

/**
 * Registrations through POST /v1/join since joins are confirmed: `joining: true` after `at`. The
 * node waits as "joining" until it is a voter; logs without the field replay as they did (ready).
 */
const JOINING_REGISTER: Command = {
  type: "NodeRegister",
  name: "node-4",
  advertise: "10.0.0.4",
  apiPort: 4400,
  raftPort: 4401,
  wgPort: 4400,
  wgPublicKey: publicKey(4),
  resources: { cores: 2, memoryBytes: 4 * GiB },
  memberSecretHash: MEMBER_HASH,
  nodeKey: "zyxwvutsrqponmlkjihgfedcba765432",
  at: 1_700_000_000_014,
  joining: true,
};
const JOINING_REGISTER_HEX =
  "b9000c64747970656c4e6f64655265676973746572646e616d65666e6f64652d34696164766572746973656831302e302e302e3467617069506f72741911306872616674506f7274191131667767506f72741911306b77675075626c69634b6579782c72414779494a36474e552b3455794e37586544302b724538663876304d365963415a4e7059582f733851733d697265736f7572636573b9000265636f726573026b6d656d6f72794279746573fb41f0000000000000706d656d62657253656372657448617368784062626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262676e6f64654b657978207a797877767574737271706f6e6d6c6b6a696867666564636261373635343332626174fb4278bcfe5680e000676a6f696e696e67f5";

describe("the Raft log's wire format, version 3 of NodeRegister (a join waiting to be confirmed)", () => {
  test("the same bytes, decoded back to the same command", () => {
    assert.equal(hex(encodeCommand(JOINING_REGISTER)), JOINING_REGISTER_HEX);
    const decoded = decodeCommand(Buffer.from(JOINING_REGISTER_HEX, "hex"));
    assert.ok(decoded.ok, JSON.stringify(decoded));
    assert.deepEqual(decoded.value, JOINING_REGISTER);
  });

  test("applied after the old log, the node is joining, and stays so through a snapshot", () => {
    const fsm = new ClusterFsm();
    for (const [i, [, , golden]] of LOG.entries()) fsm.apply(i + 1, Buffer.from(golden, "hex"));
    const result = fsm.apply(LOG.length + 1, Buffer.from(JOINING_REGISTER_HEX, "hex"));
    assert.equal(result.ok && result.node?.status, "joining");
    const restored = new ClusterFsm();
    restored.restore(fsm.snapshot());
    const record = [...restored.state.nodes.values()].find((node) => node.name === "node-4");
    assert.equal(record?.status, "joining");
  });
});
