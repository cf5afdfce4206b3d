import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  type Command,
  decodeCbor,
  decodeCommand,
  encodeCbor,
  encodeCommand,
} from "../../../lib/cluster/commands.ts";
import { ClusterFsm } from "../../../lib/cluster/fsm.ts";
import { renderStatus, statusView } from "../../../lib/cluster/views.ts";
import type { WorkloadSpec } from "../../../lib/workloads/spec.ts";
import { applied, GiB, init, register } from "./fixtures.ts";

const MiB = 1024 ** 2;
const three = [init(), register("node-1", 1), register("node-2", 2), register("node-3", 3)];

function spec(overrides: Partial<WorkloadSpec> = {}): WorkloadSpec {
  return {
    name: "web",
    replicas: 3,
    cpu: 0.5,
    memoryBytes: 256 * MiB,
    env: [],
    command: ["sleep", "1000"],
    ...overrides,
  };
}

const run = (place: number[], overrides: Partial<WorkloadSpec> = {}): Command => ({
  type: "WorkloadRun",
  spec: spec(overrides),
  at: 3000,
  stop: [],
  place,
});

const running = (id: number, node: number): Command => ({
  type: "AllocationStatus",
  id,
  node,
  status: "running",
  restarts: 0,
  at: 4000,
});

describe("workload commands in the cluster log", () => {
  test("decode through the cluster codec and refuse malformed fields by name", () => {
    const decoded = decodeCommand(encodeCommand(run([1, 2, 3])));
    assert.equal(decoded.ok && decoded.value.type, "WorkloadRun");
    const bad = decodeCommand(encodeCbor({ ...run([1]), spec: { ...spec(), cpu: -1 } }));
    assert.equal(bad.ok, false);
    assert.equal(!bad.ok && bad.problem.field, "spec.cpu");
  });

  test("WorkloadRun places allocations and AllocationStatus marks them running", () => {
    const { fsm, results } = applied([...three, run([1, 2, 3]), running(1, 1)]);
    assert.deepEqual(results[4], { ok: true, changed: true, placed: [1, 2, 3], unplaced: 0 });
    assert.deepEqual(
      [...fsm.state.workloads.allocations.values()].map((a) => [a.id, a.node, a.status]),
      [
        [1, 1, "running"],
        [2, 2, "pending"],
        [3, 3, "pending"],
      ],
    );
  });

  test("a refused workload command changes nothing and names the problem", () => {
    const { fsm, results } = applied([...three, run([1]), running(1, 2)]);
    const before = fsm.state;
    assert.equal(results[5]!.ok, false);
    assert.equal(!results[5]!.ok && results[5]!.code, "wrong-node");
    const stop = fsm.apply(9, encodeCommand({ type: "WorkloadStop", name: "api", at: 5000 }));
    assert.equal(!stop.ok && stop.code, "unknown-workload");
    assert.equal(fsm.state, before);
  });

  test("a workload command waits for the cluster's initialisation", () => {
    const { results } = applied([run([1])]);
    assert.equal(!results[0]!.ok && results[0]!.code, "uninitialised");
  });
});

describe("NodeDown reschedules with the default hook", () => {
  test("the follow-up loses the node's allocations and places replacements on the others", () => {
    const fsm = applied([...three, run([1, 2, 3])]).fsm;
    const down = fsm.apply(10, encodeCommand({ type: "NodeDown", id: 3, at: 5000 }));
    assert.ok(down.ok);
    const followUps = down.followUps ?? [];
    assert.equal(followUps.length, 1);
    const lost = followUps[0]!;
    assert.equal(lost.type, "AllocationsLost");
    assert.equal(lost.type === "AllocationsLost" && lost.at, 5000);
    const result = fsm.apply(11, encodeCommand(lost));
    assert.deepEqual(result, { ok: true, changed: true, placed: [4], unplaced: 0 });
    const byId = fsm.state.workloads.allocations;
    assert.equal(byId.get(3)?.status, "lost");
    assert.notEqual(byId.get(4)?.node, 3);
    assert.equal(fsm.apply(12, encodeCommand(lost)).ok, true, "a repeat is harmless");
    assert.equal(fsm.state.workloads.allocations.size, 4);
  });

  test("a node without allocations has nothing to follow up", () => {
    const fsm = applied([...three, run([1], { replicas: 1 })]).fsm;
    const down = fsm.apply(10, encodeCommand({ type: "NodeDown", id: 2, at: 5000 }));
    assert.deepEqual(down.ok && down.followUps, []);
  });
});

describe("snapshots with workloads", () => {
  const history = [
    ...three,
    run([1, 2, 3], { env: ["B=2", "A=1"].sort() }),
    running(1, 1),
    running(2, 2),
    run([], { name: "api", replicas: 1 }),
  ];

  test("round trip keeps the workload slice and the bytes", () => {
    const { fsm } = applied(history);
    const copy = new ClusterFsm();
    copy.restore(fsm.snapshot());
    assert.deepEqual(copy.state.workloads, fsm.state.workloads);
    assert.deepEqual(copy.snapshot(), fsm.snapshot());
    const next = copy.apply(20, encodeCommand(running(3, 3)));
    assert.deepEqual(next, { ok: true, changed: true });
  });

  test("the same history gives byte-identical snapshots", () => {
    assert.deepEqual(applied(history).fsm.snapshot(), applied(history).fsm.snapshot());
  });

  test("a damaged workload slice is refused and nothing changes", () => {
    const { fsm } = applied(history);
    const before = fsm.snapshot();
    // Decoding a copy: the decoder caches a DataView on the buffer it reads.
    const raw = decodeCbor(Uint8Array.from(before)) as Record<string, unknown>;
    const damaged = encodeCbor({ ...raw, workloads: { workloads: "x" } });
    assert.throws(() => fsm.restore(damaged), /cannot restore the cluster snapshot: workload/);
    assert.deepEqual(fsm.snapshot(), before);
  });

  test("a rolling replacement's older templates survive the round trip", () => {
    const { fsm } = applied([...history, run([], { command: ["sleep", "2000"] })]);
    const web = fsm.state.workloads.workloads.get("web")!;
    assert.equal(Object.keys(web.previous).length, 1);
    const copy = new ClusterFsm();
    copy.restore(fsm.snapshot());
    assert.deepEqual(copy.state.workloads, fsm.state.workloads);
  });

  /** A snapshot's decoded record, as far as these tests change it. */
  type Raw = {
    secrets: unknown;
    workloads: { allocations: Record<string, unknown>[]; nextAllocationId: number };
  };

  /** The snapshot of `history` with `change` applied to its decoded record. */
  function tampered(change: (raw: Raw) => void): Uint8Array {
    const raw = decodeCbor(Uint8Array.from(applied(history).fsm.snapshot())) as Raw;
    change(raw);
    return encodeCbor(raw);
  }

  for (const [what, change, field] of [
    [
      "an allocation id that is a path",
      (raw: Raw) => {
        raw.workloads.allocations[0]!.id = "../../token";
      },
      /allocations\[0\]\.id is not a positive integer/,
    ],
    [
      "an allocation id at or past nextAllocationId",
      (raw: Raw) => {
        raw.workloads.allocations[0]!.id = raw.workloads.nextAllocationId;
      },
      /not below nextAllocationId/,
    ],
    [
      "an unknown allocation status",
      (raw: Raw) => {
        raw.workloads.allocations[1]!.status = "owned";
      },
      /allocations\[1\]\.status is not a status/,
    ],
    [
      "a workload name that is not a DNS label",
      (raw: Raw) => {
        raw.workloads.allocations[2]!.workload = "../web";
      },
      /allocations\[2\]\.workload is not a workload name/,
    ],
    [
      "secrets that are not [reference, value] strings",
      (raw: Raw) => {
        raw.secrets = [["provider-token", 7]];
      },
      /secrets is not a list/,
    ],
  ] as const) {
    test(`check() and restore() refuse ${what}, naming the field, and change nothing`, () => {
      const { fsm } = applied(history);
      const before = fsm.snapshot();
      const bad = tampered(change);
      assert.throws(() => fsm.check(bad), field);
      assert.throws(() => fsm.restore(bad), field);
      assert.deepEqual(fsm.snapshot(), before);
    });
  }

  test("check() accepts a valid snapshot without changing the state; restore() then applies it", () => {
    const fsm = new ClusterFsm();
    const good = applied(history).fsm.snapshot();
    fsm.check(good);
    assert.equal(fsm.state.nodes.size, 0);
    fsm.restore(good);
    // Compared as copies: the decoder caches a DataView on the buffer it read.
    assert.deepEqual(Uint8Array.from(fsm.snapshot()), Uint8Array.from(good));
  });
});

describe("mill status with workloads", () => {
  test("shows reserved cpu and memory and the running allocations per node", () => {
    const { fsm } = applied([
      ...three,
      register("node-4", 4, { resources: { cores: 2, memoryBytes: 4 * GiB } }),
      run([1, 2, 1], { replicas: 3, memoryBytes: 1.5 * GiB }),
      running(1, 1),
    ]);
    const { state } = fsm;
    const view = statusView({
      state,
      raft: { leader: 1, term: 2, membership: { voters: [1, 2, 3, 4], learners: [] } },
      now: 10_000,
      heartbeatAge: () => 0,
    });
    assert.deepEqual(
      view.nodes.map((node) => [node.name, node.cpu.used, node.memory.used, node.allocs]),
      [
        ["node-1", 1, 3 * GiB, 1],
        ["node-2", 0.5, 1.5 * GiB, 0],
        ["node-3", 0, 0, 0],
        ["node-4", 0, 0, 0],
      ],
    );
    assert.equal(renderStatus(view).split("\n")[3], "  node-1  ready   1/4    3G/8G    1");
  });
});
