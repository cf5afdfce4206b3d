import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createPublicApi, MAX_PENDING_JOINS } from "../../../lib/api/public.ts";
import { FORWARDED_HEADER, type JoinResponse, MAX_BODY_BYTES } from "../../../lib/api/wire.ts";
import { encodeCommand } from "../../../lib/cluster/commands.ts";
import { withdrawalStatement } from "../../../lib/cluster/validate.ts";
import { createNodeIdentity, nodeKeyOf, signWithNodeKey } from "../../../lib/identity/node-key.ts";
import type { ClusterIdentity } from "../../../lib/identity/x509.ts";
import { NONE, NotLeaderError } from "../../../lib/raft/types.ts";
import { PROTOCOL_VERSION } from "../../../lib/shared/protocol.ts";
import { GiB, JOINER, joinBody, MEMBER_HASH, publicKey, signJoin } from "../cluster/fixtures.ts";
import { type FakeNode, fakeNode, IDENTITY, MEMBER_CERTS, TOKEN, TOKEN_SECRET } from "./fakes.ts";

const AUTH = { authorization: `Bearer ${TOKEN_SECRET}` };

function post(node: FakeNode, path: string, body: unknown, headers: Record<string, string> = AUTH) {
  return createPublicApi(node.deps).request(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

describe("POST /v1/join", () => {
  test("the leader registers the node and answers with its config, peers, Raft and TLS identity", async () => {
    const node = fakeNode();
    const response = await post(node, "/v1/join", joinBody());
    assert.equal(response.status, 200);
    const answer = (await response.json()) as JoinResponse;
    assert.deepEqual(answer.node, { id: 2, name: "node-2", meshAddress: "10.99.0.2" });
    assert.deepEqual(answer.cluster, { id: "c1", mesh: "wireguard", meshCidr: "10.99.0.0/16" });
    assert.equal(answer.peersVersion, 2);
    assert.deepEqual(
      answer.peers.map((p) => [p.id, p.raftAddress, p.wgPublicKey]),
      [
        [1, "10.99.0.1:4401", publicKey(1)],
        [2, "10.99.0.2:4401", publicKey(2)],
      ],
    );
    assert.deepEqual(answer.raft, { leader: 1, term: 2, voters: [1], learners: [] });
    assert.deepEqual(answer.tls, { certPem: IDENTITY.certPem, keyPem: IDENTITY.keyPem });
    assert.equal(node.proposals.length, 1);
    assert.equal(JSON.stringify(answer).includes(MEMBER_HASH), false);
  });

  test("a retry gets the same answer without a second commit", async () => {
    const node = fakeNode();
    const first = await (await post(node, "/v1/join", joinBody())).json();
    const again = await post(node, "/v1/join", joinBody());
    assert.equal(again.status, 200);
    assert.deepEqual(await again.json(), first);
    assert.equal(node.proposals.length, 1);
  });

  test("concurrent retries of one request share one proposal", async () => {
    const node = fakeNode();
    const apply = node.propose;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    node.propose = async (data) => {
      await gate;
      return apply(data);
    };
    const app = createPublicApi(node.deps);
    const send = () =>
      app.request("/v1/join", {
        method: "POST",
        headers: { ...AUTH, "content-type": "application/json" },
        body: JSON.stringify(joinBody()),
      });
    const both = Promise.all([send(), send()]);
    await new Promise((resolve) => setImmediate(resolve));
    release();
    const statuses = (await both).map((r) => r.status);
    assert.deepEqual(statuses, [200, 200]);
    assert.equal(node.proposals.length, 1);
  });

  test("a join not signed by the key it registers is 403 naming signature, and nothing is proposed", async () => {
    const node = fakeNode();
    const stranger = createNodeIdentity();
    const cases = [
      // Another key signed it (an attacker who knows the member's public nodeKey).
      { ...signJoin(joinBody(), stranger), nodeKey: nodeKeyOf(JOINER.certPem) },
      // The right certificate, but the signature is for another registration.
      { ...joinBody(), advertise: "10.0.0.66" },
      // A certificate that is not the one nodeKey names.
      { ...joinBody(), nodeCert: stranger.certPem },
    ];
    for (const body of cases) {
      const response = await post(node, "/v1/join", body);
      assert.equal(response.status, 403);
      const answer = (await response.json()) as { error: string; field: string };
      assert.equal(answer.field, "signature");
      assert.match(answer.error, /not signed by the node key it registers/);
    }
    assert.equal(node.proposals.length, 0);
  });

  test(`at most ${MAX_PENDING_JOINS} joins wait at once; more are 429 and nothing is committed`, async () => {
    const node = fakeNode();
    const identities = Array.from({ length: MAX_PENDING_JOINS + 1 }, () => createNodeIdentity());
    const join = (i: number) =>
      signJoin(
        {
          requestId: `join-fake-${String(i).padStart(4, "0")}`,
          name: `fake-${i}`,
          advertise: `10.0.1.${i}`,
          apiPort: 4400,
          raftPort: 4401,
          wgPort: 51820,
          wgPublicKey: publicKey(20 + i),
          resources: { cores: 2, memoryBytes: 4 * GiB },
          memberSecretHash: MEMBER_HASH,
          mesh: "wireguard",
        },
        identities[i],
      );
    for (let i = 0; i < MAX_PENDING_JOINS; i++) {
      assert.equal((await post(node, "/v1/join", join(i))).status, 200, `join ${i}`);
    }
    const proposals = node.proposals.length;
    const refused = await post(node, "/v1/join", join(MAX_PENDING_JOINS));
    assert.equal(refused.status, 429);
    assert.match(
      ((await refused.json()) as { error: string }).error,
      /16 joins are waiting for their nodes to start/,
    );
    assert.equal(node.proposals.length, proposals);
    assert.equal((await post(node, "/v1/join", join(3))).status, 200, "a retry of a waiting join");
    const states = [...node.fsm.state.nodes.values()].map((record) => record.status);
    assert.equal(states.filter((status) => status === "joining").length, MAX_PENDING_JOINS);
  });

  test("a taken name with another key is 409 with the fix", async () => {
    const node = fakeNode();
    const response = await post(node, "/v1/join", joinBody({ name: "node-1" }));
    assert.equal(response.status, 409);
    const body = (await response.json()) as { error: string; field: string };
    assert.equal(body.field, "name");
    assert.match(body.error, /pass another --name/);
  });

  test("another node's address and port is 409 naming that node, and nothing is proposed", async () => {
    const node = fakeNode();
    const taken = await post(node, "/v1/join", joinBody({ advertise: "10.0.0.1" }));
    assert.equal(taken.status, 409);
    assert.deepEqual(await taken.json(), {
      error:
        "10.0.0.1 port 4400 is node 1 (node-1)'s address: pass this host's own --advertise, or another --port",
      field: "advertise",
    });
    assert.equal(node.proposals.length, 0);
    // The same address with ports of its own is another node on that host: accepted.
    const ports = { advertise: "10.0.0.1", apiPort: 4500, raftPort: 4501 };
    const otherPorts = await post(node, "/v1/join", joinBody(ports));
    assert.equal(otherPorts.status, 200);
  });

  test("a joiner with the other mesh mode is 409 naming --mesh, and nothing is proposed", async () => {
    const node = fakeNode();
    const response = await post(node, "/v1/join", joinBody({ mesh: "none" }));
    assert.equal(response.status, 409);
    assert.deepEqual(await response.json(), {
      error: "the cluster runs with --mesh wireguard: run mill join with --mesh wireguard",
      field: "mesh",
    });
    assert.equal(node.proposals.length, 0);
  });

  const other = { major: PROTOCOL_VERSION.major + 1, minor: 0 };
  const bothVersions = `${other.major}\\.0, this cluster ${PROTOCOL_VERSION.major}\\.${PROTOCOL_VERSION.minor}`;

  test("a joiner of another major protocol version is 409 naming both, logged, and nothing is proposed or forwarded", async () => {
    const node = fakeNode();
    node.role = "follower";
    node.leader = 3;
    const response = await post(node, "/v1/join", joinBody({ protocol: other }));
    assert.equal(response.status, 409);
    const body = (await response.json()) as { error: string; field: string };
    assert.equal(body.field, "protocol");
    assert.match(body.error, new RegExp(`^the joining node speaks protocol ${bothVersions}: `));
    assert.deepEqual(node.warnings, [
      `refused the join of node node-2: it speaks protocol ${other.major}.0, this node ${PROTOCOL_VERSION.major}.${PROTOCOL_VERSION.minor}`,
    ]);
    assert.equal(node.proposals.length, 0);
    assert.equal(node.forwarded.length, 0);
  });

  test("another major is refused for its version even when the rest is not this version's join", async () => {
    const node = fakeNode();
    const response = await post(node, "/v1/join", {
      protocol: other,
      name: "Not A Label",
      registration: { shaped: "differently" },
    });
    assert.equal(response.status, 409);
    assert.equal(((await response.json()) as { field: string }).field, "protocol");
    assert.deepEqual(node.warnings, [
      `refused the join of a node: it speaks protocol ${other.major}.0, this node ${PROTOCOL_VERSION.major}.${PROTOCOL_VERSION.minor}`,
    ]);
    assert.equal(node.proposals.length, 0);
  });

  test("the same major joins whatever its minor, or without a version (1.0); the answer carries this node's", async () => {
    for (const protocol of [
      { major: PROTOCOL_VERSION.major, minor: PROTOCOL_VERSION.minor + 7 },
      undefined,
    ]) {
      const node = fakeNode();
      const response = await post(node, "/v1/join", joinBody({ protocol }));
      assert.equal(response.status, 200, JSON.stringify(protocol));
      assert.deepEqual(((await response.json()) as JoinResponse).protocol, PROTOCOL_VERSION);
      assert.equal(node.proposals.length, 1);
      assert.deepEqual(node.warnings, []);
    }
  });

  test("once the cluster committed protocol 1.2, a joiner of 1.1 (or without a version) is 409 naming both and the fix, logged, nothing proposed", async () => {
    for (const protocol of [{ major: 1, minor: 1 }, undefined]) {
      const node = fakeNode();
      node.propose(encodeCommand({ type: "ClusterProtocol", major: 1, minor: 2 }));
      const response = await post(node, "/v1/join", joinBody({ protocol }));
      assert.equal(response.status, 409);
      const theirs = protocol ? "1.1" : "1.0";
      assert.deepEqual(await response.json(), {
        error: `the joining node speaks protocol ${theirs}, below this cluster's protocol 1.2: join with a mill of protocol 1.2 or later`,
        field: "protocol",
      });
      assert.deepEqual(node.warnings, [
        `refused the join of node node-2: it speaks protocol ${theirs}, this node ${PROTOCOL_VERSION.major}.${PROTOCOL_VERSION.minor}, and the cluster's protocol is 1.2`,
      ]);
      assert.equal(node.proposals.length, 0);
      const current = await post(node, "/v1/join", joinBody({ protocol: PROTOCOL_VERSION }));
      assert.equal(current.status, 200, "this build's protocol still joins");
    }
  });

  const badVersions: [string, unknown, string][] = [
    ["a version as text", "1.0", "protocol"],
    ["a negative minor", { major: PROTOCOL_VERSION.major, minor: -1 }, "protocol.minor"],
    ["a fractional major", { major: 1.5, minor: 0 }, "protocol.major"],
    ["a major beyond 16 bits", { major: 65536, minor: 0 }, "protocol.major"],
    ["no minor", { major: PROTOCOL_VERSION.major }, "protocol.minor"],
  ];
  for (const [what, protocol, field] of badVersions) {
    test(`${what} is 400 naming ${field}, and nothing is proposed`, async () => {
      const node = fakeNode();
      const response = await post(node, "/v1/join", joinBody({ protocol }));
      assert.equal(response.status, 400);
      assert.equal(((await response.json()) as { field: string }).field, field);
      assert.equal(node.proposals.length, 0);
    });
  }

  const unauthorised: [string, Record<string, string>][] = [
    ["no token", {}],
    ["a wrong token", { authorization: `Bearer ${"x".repeat(32)}` }],
    ["a non-bearer scheme", { authorization: `Basic ${TOKEN_SECRET}` }],
  ];
  for (const [what, headers] of unauthorised) {
    test(`${what} is 401 and nothing is committed`, async () => {
      const node = fakeNode();
      const response = await post(node, "/v1/join", joinBody(), headers);
      assert.equal(response.status, 401);
      assert.match(((await response.json()) as { error: string }).error, /token/);
      assert.equal(node.proposals.length, 0);
      assert.equal(node.forwarded.length, 0);
    });
  }

  const otherCluster = `mill_t_${TOKEN_SECRET}.${"f".repeat(32)}`;
  const credentials: [string, string, number][] = [
    ["the secret alone", `Bearer ${TOKEN_SECRET}`, 200],
    ["the whole token as init prints it", `Bearer ${TOKEN}`, 200],
    ["the whole token in upper case", `Bearer ${TOKEN.toUpperCase()}`, 200],
    ["the right secret with another cluster's fingerprint", `Bearer ${otherCluster}`, 401],
    ["a malformed whole token", `Bearer ${TOKEN.slice(0, -1)}`, 401],
  ];
  const clientRoutes: [string, string][] = [
    ["GET", "/v1/status"],
    ["GET", "/v1/nodes"],
    ["GET", "/v1/allocations"],
    ["GET", "/v1/workloads/web"],
    ["DELETE", "/v1/workloads/web"],
    ["POST", "/v1/workloads"],
    ["GET", "/v1/nodes/node-1/drain"],
    ["GET", "/v1/debug/state"],
    ["POST", "/v1/join"],
    ["POST", "/v1/join/confirm"],
    ["POST", "/v1/join/withdraw"],
    ["POST", "/v1/token/rotate"],
  ];
  for (const [what, authorization, expected] of credentials) {
    test(`${what} is ${expected === 200 ? "admitted" : "401"} on every client route`, async () => {
      for (const [method, path] of clientRoutes) {
        const node = fakeNode();
        const response = await createPublicApi(node.deps).request(path, {
          method,
          headers: { authorization, "content-type": "application/json" },
          ...(method === "POST" ? { body: "{}" } : {}),
        });
        const body = (await response.json()) as { error?: string };
        if (expected === 200) {
          assert.notEqual(response.status, 401, `${method} ${path}: ${body.error}`);
        } else {
          assert.equal(response.status, 401, `${method} ${path}`);
          assert.equal(node.proposals.length, 0);
        }
      }
    });
  }

  test("a token for another cluster is refused naming the cause", async () => {
    const node = fakeNode();
    const response = await createPublicApi(node.deps).request("/v1/status", {
      headers: { authorization: `Bearer ${otherCluster}` },
    });
    assert.equal(response.status, 401);
    assert.deepEqual(await response.json(), {
      error:
        "this token is for another cluster: its fingerprint does not match this cluster's certificate; pass this cluster's token",
    });
  });

  const malformed: [string, unknown, string][] = [
    ["invalid JSON", "{name:", "body"],
    ["an array", [1, 2], "body"],
    ["a bad name", joinBody({ name: "Node 2" }), "name"],
    ["a missing port", joinBody({ raftPort: undefined }), "raftPort"],
    ["no cores", joinBody({ resources: { cores: 0, memoryBytes: GiB } }), "resources.cores"],
    ["a bad key", joinBody({ wgPublicKey: "nope" }), "wgPublicKey"],
    ["a loopback address in a real cluster", joinBody({ advertise: "127.0.0.1" }), "advertise"],
  ];
  for (const [what, body, field] of malformed) {
    test(`${what} is 400 naming ${field}, and nothing is committed`, async () => {
      const node = fakeNode();
      const response = await post(node, "/v1/join", body);
      assert.equal(response.status, 400);
      assert.equal(((await response.json()) as { field: string }).field, field);
      assert.equal(node.proposals.length, 0);
    });
  }

  test("a body over 64 KiB is 413, by Content-Length or by its actual bytes", async () => {
    const node = fakeNode();
    const big = JSON.stringify(joinBody({ padding: "x".repeat(MAX_BODY_BYTES) }));
    const declared = await post(node, "/v1/join", "{}", {
      ...AUTH,
      "content-length": String(MAX_BODY_BYTES + 1),
    });
    const streamed = await createPublicApi(node.deps).request("/v1/join", {
      method: "POST",
      headers: AUTH,
      body: new Blob([big]).stream(),
      duplex: "half",
    } as RequestInit);
    assert.deepEqual([declared.status, streamed.status], [413, 413]);
    assert.equal(node.proposals.length, 0);
  });

  test("a follower forwards to the leader once, marked, and proposes nothing itself", async () => {
    const node = fakeNode();
    node.role = "follower";
    const body = joinBody();
    const response = await post(node, "/v1/join", body);
    assert.deepEqual(await response.json(), { from: "leader" });
    assert.equal(node.forwarded.length, 1);
    const forwarded = node.forwarded[0]!;
    assert.equal(forwarded.headers.get(FORWARDED_HEADER), "1");
    assert.equal(forwarded.headers.get("authorization"), AUTH.authorization);
    assert.deepEqual(await forwarded.json(), body);
    assert.equal(node.proposals.length, 0);
  });

  test("a forwarded request reaching a non-leader is 503, not forwarded again", async () => {
    const node = fakeNode();
    node.role = "follower";
    const response = await post(node, "/v1/join", joinBody(), { ...AUTH, [FORWARDED_HEADER]: "1" });
    assert.equal(response.status, 503);
    assert.equal(node.forwarded.length, 0);
  });

  test("no leader is 503 with that reason", async () => {
    const node = fakeNode();
    node.role = "follower";
    node.leader = NONE;
    const response = await post(node, "/v1/join", joinBody());
    assert.equal(response.status, 503);
    assert.match(((await response.json()) as { error: string }).error, /no leader.*quorum/);
  });

  test("an unreachable leader is 502 naming both nodes and the underlying error", async () => {
    const node = fakeNode();
    node.role = "follower";
    node.forward = () =>
      Promise.reject(
        new Error("https://10.0.0.1:4400/v1/join: socket hang up", {
          cause: new Error("socket hang up"),
        }),
      );
    const response = await post(node, "/v1/join", joinBody());
    assert.equal(response.status, 502);
    assert.equal(
      ((await response.json()) as { error: string }).error,
      "node-1 cannot reach the leader node-1 at 10.0.0.1:4400: socket hang up",
    );
  });

  test("losing leadership or quorum during the commit is 503", async () => {
    const lost = fakeNode();
    lost.propose = () => Promise.reject(new NotLeaderError(NONE));
    const lostResponse = await post(lost, "/v1/join", joinBody());
    const stuck = fakeNode();
    stuck.propose = () => new Promise(() => {});
    const stuckResponse = await post(stuck, "/v1/join", joinBody());
    assert.deepEqual([lostResponse.status, stuckResponse.status], [503, 503]);
    assert.match(((await stuckResponse.json()) as { error: string }).error, /no quorum/);
  });

  test("an unexpected failure is a bare 500 reported to the node", async () => {
    const node = fakeNode();
    node.propose = () => Promise.reject(new Error("disk on fire"));
    const response = await post(node, "/v1/join", joinBody());
    assert.equal(response.status, 500);
    assert.deepEqual(await response.json(), { error: "internal error" });
    assert.equal(node.errors.length, 1);
  });
});

describe("POST /v1/join/confirm", () => {
  async function joined() {
    const node = fakeNode();
    await post(node, "/v1/join", joinBody());
    return node;
  }
  const confirm = { requestId: "join-node-2-0001", nodeId: 2, wgPublicKey: publicKey(2) };

  test("adds the node as a voter and answers once it is committed", async () => {
    const node = await joined();
    const response = await post(node, "/v1/join/confirm", confirm);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), {
      node: { id: 2, name: "node-2" },
      raft: { leader: 1, term: 2, voters: [1, 2], learners: [] },
    });
    assert.deepEqual(node.addedVoters, [2]);
    assert.notEqual(
      node.deps.heartbeats.lastHeard(2),
      undefined,
      "the confirmation counts as heard",
    );
    assert.equal(node.fsm.state.nodes.get(2)?.status, "ready", "a voter now: it takes work");
  });

  test("until it is confirmed a joined node is joining and gets no replicas", async () => {
    const node = await joined();
    assert.equal(node.fsm.state.nodes.get(2)?.status, "joining");
    const run = await post(node, "/v1/workloads", { name: "web", replicas: 4, command: ["sleep"] });
    assert.equal(run.status, 200, await run.clone().text());
    const nodes = [...node.fsm.state.workloads.allocations.values()].map((a) => a.node);
    assert.ok(nodes.length > 0);
    assert.deepEqual(new Set(nodes), new Set([1]), "every replica is on the ready node");
  });

  test("an unknown node or another key is 409; nothing is added", async () => {
    const node = await joined();
    const unknown = await post(node, "/v1/join/confirm", { ...confirm, nodeId: 7 });
    const otherKey = await post(node, "/v1/join/confirm", {
      ...confirm,
      wgPublicKey: publicKey(9),
    });
    assert.deepEqual([unknown.status, otherKey.status], [409, 409]);
    assert.equal(((await otherKey.json()) as { field: string }).field, "wgPublicKey");
    assert.deepEqual(node.addedVoters, []);
  });

  test("a malformed confirmation is 400 naming the field", async () => {
    const node = await joined();
    const response = await post(node, "/v1/join/confirm", { ...confirm, nodeId: "2" });
    assert.equal(response.status, 400);
    assert.equal(((await response.json()) as { field: string }).field, "nodeId");
  });

  test("a failed promotion is 503", async () => {
    const node = await joined();
    node.addVoter = () => Promise.reject(new NotLeaderError(3));
    const response = await post(node, "/v1/join/confirm", confirm);
    assert.equal(response.status, 503);
  });
});

describe("POST /v1/join/withdraw", () => {
  async function joined() {
    const node = fakeNode();
    assert.equal((await post(node, "/v1/join", joinBody())).status, 200);
    return node;
  }
  /** A withdrawal of `nodeId`, signed by `as` for `clusterId`, as the joiner's key would. */
  const withdrawal = (nodeId: number, as: ClusterIdentity = JOINER, clusterId = "c1") => ({
    nodeId,
    nodeCert: as.certPem,
    signature: signWithNodeKey(as.keyPem, withdrawalStatement(clusterId, nodeId)),
  });
  const statusOf = (node: FakeNode, id: number) => node.fsm.state.nodes.get(id)?.status;

  test("the joiner's key withdraws its joining registration; a retry changes nothing", async () => {
    const node = await joined();
    const response = await post(node, "/v1/join/withdraw", withdrawal(2));
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { node: { id: 2, name: "node-2" }, withdrawn: true });
    assert.equal(statusOf(node, 2), "left");
    assert.deepEqual(node.removedServers, [2], "committed as a removal, learner included");
    const status = await createPublicApi(node.deps).request("/v1/nodes", { headers: AUTH });
    const listed = (await status.json()) as { nodes: { name: string }[] };
    assert.deepEqual(
      listed.nodes.map((n) => n.name),
      ["node-1"],
    );
    const again = await post(node, "/v1/join/withdraw", withdrawal(2));
    assert.equal(again.status, 200);
    assert.deepEqual(await again.json(), { node: { id: 2, name: "node-2" }, withdrawn: false });
    assert.deepEqual(node.removedServers, [2]);
    // The name is free again: a fresh node can join under it.
    const { nodeKey: _key, nodeCert: _cert, signature: _signature, ...unsigned } = joinBody();
    const fresh = { ...unsigned, requestId: "join-node-2-0002", wgPublicKey: publicKey(12) };
    const rejoined = await post(node, "/v1/join", signJoin(fresh, createNodeIdentity()));
    assert.equal(rejoined.status, 200);
  });

  test("without the registration's key it is 403 and nothing changes", async () => {
    const node = await joined();
    const stranger = createNodeIdentity();
    const forged = [
      // Another key, its own certificate: the record names the joiner's key.
      withdrawal(2, stranger),
      // The joiner's certificate (it is public), signed by another key.
      { ...withdrawal(2, stranger), nodeCert: JOINER.certPem },
      // The joiner's real signature for another node id, replayed against node 2.
      { ...withdrawal(3), nodeId: 2 },
      // The joiner's signature made for another cluster.
      withdrawal(2, JOINER, "c2"),
    ];
    for (const body of forged) {
      const response = await post(node, "/v1/join/withdraw", body);
      assert.equal(response.status, 403);
      const answer = (await response.json()) as { error: string; field: string };
      assert.equal(answer.field, "signature");
      assert.match(answer.error, /not signed by node 2's key/);
    }
    assert.equal(statusOf(node, 2), "joining");
    assert.deepEqual(node.removedServers, []);
    assert.equal(node.proposals.length, 1, "only the registration was ever proposed");
  });

  test("a ready node, or a joining node that is already a voter, is 409 and stays", async () => {
    const node = await joined();
    const ready = await post(node, "/v1/join/withdraw", withdrawal(1, MEMBER_CERTS.get(1)!));
    assert.equal(ready.status, 409);
    assert.deepEqual(await ready.json(), {
      error:
        "node 1 (node-1) is ready, not a join in progress: a member leaves with mill leave, or is removed with mill remove",
      field: "nodeId",
    });
    await node.deps.raft.addVoter(2);
    const voter = await post(node, "/v1/join/withdraw", withdrawal(2));
    assert.equal(voter.status, 409);
    assert.match(((await voter.json()) as { error: string }).error, /node 2 \(node-2\) is a voter/);
    assert.deepEqual([statusOf(node, 1), statusOf(node, 2)], ["ready", "joining"]);
    assert.deepEqual(node.removedServers, []);
  });

  test("a join whose promotion finishes before its removal runs is kept: 409", async () => {
    const node = await joined();
    // The removal waits in Raft's membership queue behind the promotion, which wins.
    node.removeLearner = async (id) => {
      await node.deps.raft.addVoter(id);
      return undefined;
    };
    const response = await post(node, "/v1/join/withdraw", withdrawal(2));
    assert.equal(response.status, 409);
    assert.match(
      ((await response.json()) as { error: string }).error,
      /node 2 \(node-2\) is a voter/,
    );
    assert.equal(statusOf(node, 2), "joining");
    assert.deepEqual(node.removedServers, []);
  });

  test("a wrong token is 401, an unknown node 404, a malformed body 400; nothing changes", async () => {
    const node = await joined();
    const wrongToken = await post(node, "/v1/join/withdraw", withdrawal(2), {
      authorization: `Bearer ${"x".repeat(32)}`,
    });
    assert.equal(wrongToken.status, 401);
    const unknown = await post(node, "/v1/join/withdraw", withdrawal(7));
    assert.equal(unknown.status, 404);
    assert.equal(((await unknown.json()) as { field: string }).field, "nodeId");
    const malformed = await post(node, "/v1/join/withdraw", { ...withdrawal(2), nodeId: "2" });
    assert.equal(malformed.status, 400);
    assert.equal(((await malformed.json()) as { field: string }).field, "nodeId");
    assert.equal(statusOf(node, 2), "joining");
    assert.deepEqual(node.removedServers, []);
  });

  test("a follower forwards it to the leader and removes nothing itself", async () => {
    const node = await joined();
    node.role = "follower";
    const response = await post(node, "/v1/join/withdraw", withdrawal(2));
    assert.deepEqual(await response.json(), { from: "leader" });
    assert.equal(node.forwarded.length, 1);
    assert.equal(statusOf(node, 2), "joining");
    assert.deepEqual(node.removedServers, []);
  });
});

describe("GET /v1/status and /v1/nodes", () => {
  test("answer after a read barrier with the status JSON", async () => {
    const node = fakeNode();
    let barriers = 0;
    node.readBarrier = async () => {
      barriers++;
    };
    const response = await createPublicApi(node.deps).request("/v1/status", { headers: AUTH });
    assert.equal(response.status, 200);
    const body = (await response.json()) as { leader: string; nodes: { name: string }[] };
    assert.equal(body.leader, "node-1");
    assert.deepEqual(
      body.nodes.map((n) => n.name),
      ["node-1"],
    );
    assert.equal(barriers, 1);
  });

  test("nodes carries the mesh columns", async () => {
    const response = await createPublicApi(fakeNode().deps).request("/v1/nodes", { headers: AUTH });
    const body = (await response.json()) as { nodes: { meshAddress: string }[] };
    assert.equal(body.nodes[0]!.meshAddress, "10.99.0.1");
  });

  test("without a read barrier the answer is 503; without a token 401", async () => {
    const node = fakeNode();
    node.readBarrier = () => Promise.reject(new NotLeaderError(NONE));
    const app = createPublicApi(node.deps);
    const noQuorum = await app.request("/v1/status", { headers: AUTH });
    const noToken = await app.request("/v1/nodes");
    assert.deepEqual([noQuorum.status, noToken.status], [503, 401]);
  });
});

describe("routing", () => {
  test("unknown routes and methods are 404 without detail", async () => {
    const app = createPublicApi(fakeNode().deps);
    for (const [path, method] of [
      ["/", "GET"],
      ["/v1/join", "GET"],
      ["/v1/secrets", "GET"],
      ["/v1/internal/peers", "GET"],
    ] as const) {
      const response = await app.request(path, { method, headers: AUTH });
      assert.equal(response.status, 404, `${method} ${path}`);
      assert.deepEqual(await response.json(), { error: "not found" });
    }
  });
});
