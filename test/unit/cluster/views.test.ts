import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeCommand } from "../../../lib/cluster/commands.ts";
import {
  nodesView,
  peerList,
  renderNodes,
  renderStatus,
  statusView,
  type ViewInput,
} from "../../../lib/cluster/views.ts";
import { diskProblem } from "../../../lib/shared/node-facts.ts";
import { applied, GiB, init, publicKey, register } from "./fixtures.ts";

/** The seed's cluster: node-1 and node-2 with 4 cores/8G, node-3 with 2 cores/4G. */
function seedCluster(mesh: "wireguard" | "none" = "none") {
  return applied([
    init({ mesh, provider: { name: "digitalocean", token: "do-secret-token" } }),
    register("node-1", 1, { version: "0.1.0" }),
    register("node-2", 2, { version: "0.2.0-rc.1" }),
    register("node-3", 3, { resources: { cores: 2, memoryBytes: 4 * GiB } }),
  ]).fsm;
}

function input(fsm = seedCluster(), overrides: Partial<ViewInput> = {}): ViewInput {
  return {
    state: fsm.state,
    raft: { leader: 1, term: 3, membership: { voters: [1, 2, 3], learners: [] } },
    now: 100_000,
    heartbeatAge: (id) => (id === 1 ? 0 : id * 1000),
    ...overrides,
  };
}

describe("mill status", () => {
  test("prints exactly the seed's text for a healthy three-node cluster", () => {
    assert.equal(
      renderStatus(statusView(input())),
      [
        "CLUSTER: 3 nodes, all healthy",
        "NODES",
        "  NAME    STATUS  CPU    MEM     ALLOCS",
        "  node-1  ready   0/4    0/8G    0",
        "  node-2  ready   0/4    0/8G    0",
        "  node-3  ready   0/2    0/4G    0",
      ].join("\n"),
    );
  });

  test("names the down nodes and the leader when not all are healthy", () => {
    const fsm = seedCluster();
    fsm.apply(10, encodeCommand({ type: "NodeDown", id: 1, at: 5000 }));
    const text = renderStatus(
      statusView(
        input(fsm, {
          raft: { leader: 2, term: 4, membership: { voters: [1, 2, 3], learners: [] } },
        }),
      ),
    );
    assert.equal(text.split("\n")[0], "CLUSTER: 2 nodes healthy, 1 down (leader: node-2)");
    assert.equal(text.split("\n")[3], "  node-1  down    0/4    0/8G    0");
  });

  test("a draining node shows as draining in both views and is counted apart", () => {
    const fsm = seedCluster();
    fsm.apply(10, encodeCommand({ type: "NodeDrain", id: 2, at: 5000 }));
    const lines = renderStatus(statusView(input(fsm))).split("\n");
    assert.equal(lines[0], "CLUSTER: 3 nodes, all healthy, 1 draining");
    assert.equal(lines[4], "  node-2  draining  0/4    0/8G    0");
    assert.deepEqual(
      nodesView(input(fsm)).nodes.map((node) => node.status),
      ["ready", "draining", "ready"],
    );
    fsm.apply(11, encodeCommand({ type: "NodeDown", id: 2, at: 6000 }));
    assert.equal(statusView(input(fsm)).nodes[1]!.status, "down", "health comes first");
  });

  test("widens a column for a wider cell; a removed node disappears from the list", () => {
    const fsm = seedCluster();
    fsm.apply(
      10,
      encodeCommand(
        register("a-much-longer-name", 4, { resources: { cores: 64, memoryBytes: 7.5 * GiB } }),
      ),
    );
    fsm.apply(11, encodeCommand({ type: "NodeRemove", id: 3, at: 6000 }));
    const lines = renderStatus(statusView(input(fsm))).split("\n");
    assert.equal(lines[0], "CLUSTER: 3 nodes, all healthy");
    assert.equal(lines[2], "  NAME                STATUS  CPU    MEM     ALLOCS");
    assert.equal(lines[5], "  a-much-longer-name  ready   0/64   0/7.5G  0");
    assert.equal(lines.length, 6);
    assert.deepEqual(
      nodesView(input(fsm)).nodes.map((node) => node.name),
      ["node-1", "node-2", "a-much-longer-name"],
    );
  });

  test("--json has exactly the documented shape and no secrets", () => {
    const json = statusView(input());
    assert.deepEqual(JSON.parse(JSON.stringify(json)), {
      leader: "node-1",
      term: 3,
      protocol: "1.0",
      nodes: [1, 2, 3].map((id) => ({
        name: `node-${id}`,
        id,
        status: "ready",
        role: "voter",
        address: `10.0.0.${id}`,
        cpu: { used: 0, total: id === 3 ? 2 : 4 },
        memory: { used: 0, total: (id === 3 ? 4 : 8) * GiB },
        allocs: 0,
        lastHeartbeatMs: id === 1 ? 0 : id * 1000,
      })),
    });
    assert.deepEqual(Object.keys(json.nodes[0]!), [
      "name",
      "id",
      "status",
      "role",
      "address",
      "cpu",
      "memory",
      "allocs",
      "lastHeartbeatMs",
    ]);
  });

  test("roles follow Raft membership and unknown heartbeats are null", () => {
    const json = statusView(
      input(seedCluster(), {
        raft: { leader: 0, term: 5, membership: { voters: [1], learners: [2] } },
        heartbeatAge: () => undefined,
      }),
    );
    assert.equal(json.leader, null);
    assert.deepEqual(
      json.nodes.map((n) => [n.role, n.lastHeartbeatMs]),
      [
        ["voter", null],
        ["learner", null],
        ["none", null],
      ],
    );
  });
});

describe("mill nodes", () => {
  const peers = new Map([
    [publicKey(2), { endpoint: "10.0.0.2:51820", lastHandshakeAt: 88_000 }],
    [publicKey(3), {}],
  ]);

  test("the table fills the mesh columns from the state and the local WireGuard peers", () => {
    const text = renderNodes(
      nodesView(input(seedCluster("wireguard"), { mesh: { self: 1, peers } })),
    );
    assert.equal(
      text,
      [
        "NAME    ID  STATUS  ROLE   VERSION     ADDRESS        MESH-ADDRESS  ENDPOINT        HANDSHAKE",
        "node-1  1   ready   voter  0.1.0       10.0.0.1:4400  10.99.0.1     10.0.0.1:51820  -",
        "node-2  2   ready   voter  0.2.0-rc.1  10.0.0.2:4400  10.99.0.2     10.0.0.2:51820  12s ago",
        "node-3  3   ready   voter  -           10.0.0.3:4400  10.99.0.3     10.0.0.3:51820  never",
      ].join("\n"),
    );
  });

  test("without a mesh the mesh columns are dashes and the JSON has no mesh fields", () => {
    const json = nodesView(input(seedCluster("none"), { mesh: { self: 1, peers } }));
    assert.equal(json.nodes[0]!.meshAddress, undefined);
    assert.equal(
      renderNodes(json).split("\n")[1],
      "node-1  1   ready   voter  0.1.0       10.0.0.1:4400  -             -         -",
    );
  });

  test("--json carries the mesh fields and never a secret", () => {
    const json = nodesView(input(seedCluster("wireguard"), { mesh: { self: 1, peers } }));
    assert.deepEqual(json.nodes[1], {
      name: "node-2",
      id: 2,
      status: "ready",
      role: "voter",
      advertise: "10.0.0.2",
      apiPort: 4400,
      raftPort: 4401,
      wgPort: 51820,
      wgPublicKey: publicKey(2),
      joinedAt: 2000,
      version: "0.2.0-rc.1",
      meshAddress: "10.99.0.2",
      endpoint: "10.0.0.2:51820",
      handshakeAgeMs: 12_000,
    });
    const text = JSON.stringify([
      json,
      statusView(input(seedCluster("wireguard"), { mesh: { self: 1, peers } })),
    ]);
    for (const secret of ["do-secret-token", "a".repeat(64), "b".repeat(64)]) {
      assert.equal(text.includes(secret), false, `leaks ${secret.slice(0, 8)}`);
    }
  });
});

describe("peer list", () => {
  test("lists members with their Raft address on the mesh, or on the advertise address without one", () => {
    const wireguard = seedCluster("wireguard");
    wireguard.apply(10, encodeCommand({ type: "NodeRemove", id: 3, at: 1 }));
    const list = peerList(wireguard.state);
    assert.equal(list.peersVersion, 4);
    assert.deepEqual(
      list.peers.map((p) => [p.id, p.raftAddress]),
      [
        [1, "10.99.0.1:4401"],
        [2, "10.99.0.2:4401"],
      ],
    );
    assert.deepEqual(
      peerList(seedCluster("none").state).peers.map((p) => p.raftAddress),
      ["10.0.0.1:4401", "10.0.0.2:4401", "10.0.0.3:4401"],
    );
  });
});

describe("a full data-dir disk", () => {
  const MiB = 1024 ** 2;
  const disks = new Map([
    [1, { freeBytes: 40 * GiB, totalBytes: 100 * GiB }],
    [2, { freeBytes: 1 * MiB, totalBytes: 64 * MiB }],
    [3, { freeBytes: 4 * MiB, totalBytes: 64 * MiB }],
  ]);

  test("makes an up node not healthy in status and nodes, with the reason", () => {
    const view = input(seedCluster(), { disk: (id) => disks.get(id) });
    const status = statusView(view);
    assert.equal(status.nodes[0]!.problem, undefined);
    assert.equal(
      status.nodes[1]!.problem,
      "data-dir disk nearly full (98% used, 1.0 MiB free): free space or move the data dir",
    );
    assert.equal(status.nodes[2]!.problem, undefined, "4 MiB of 64 MiB is above 5%");
    const lines = renderStatus(status).split("\n");
    assert.equal(lines[0], "CLUSTER: 2 nodes healthy, 1 not healthy (leader: node-1)");
    assert.equal(
      lines[1],
      "  node-2: data-dir disk nearly full (98% used, 1.0 MiB free): free space or move the data dir",
    );
    assert.match(lines.find((line) => line.includes("node-2  "))!, /node-2\s+unhealthy/);
    const nodes = nodesView(view);
    assert.match(nodes.nodes[1]!.problem!, /nearly full/);
    assert.match(renderNodes(nodes), /node-2\s+2\s+unhealthy/);
  });

  test("an empty disk is full; a big disk is full below 1 GiB; a down node is just down", () => {
    assert.match(
      diskProblem({ freeBytes: 0, totalBytes: 10 * MiB })!,
      /^data-dir disk full \(100% used/,
    );
    assert.equal(diskProblem({ freeBytes: 2 * GiB, totalBytes: 1000 * GiB }), undefined);
    assert.match(diskProblem({ freeBytes: 900 * MiB, totalBytes: 1000 * GiB })!, /nearly full/);
    assert.equal(diskProblem(undefined), undefined);
  });
});
