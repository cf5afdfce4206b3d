import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createInternalApi } from "../../../lib/api/internal.ts";
import { type HeartbeatResponse, MEMBER_HEADER } from "../../../lib/api/wire.ts";
import { encodeCommand } from "../../../lib/cluster/commands.ts";
import type { PeerList } from "../../../lib/cluster/views.ts";
import { hashSecret } from "../../../lib/identity/token.ts";
import { PROTOCOL_HEADER, PROTOCOL_VERSION } from "../../../lib/shared/protocol.ts";
import { register } from "../cluster/fixtures.ts";
import {
  asMember,
  fakeNode,
  MEMBER_CERTS,
  MEMBER_SECRET,
  memberKey,
  TOKEN_SECRET,
} from "./fakes.ts";

const NODE_2_SECRET = "member-secret-of-node-2";

/** node-1 leads; node-2 is a member with its own secret. */
function cluster() {
  const node = fakeNode();
  node.fsm.apply(
    10,
    encodeCommand(
      register("node-2", 2, { memberSecretHash: hashSecret(NODE_2_SECRET), nodeKey: memberKey(2) }),
    ),
  );
  return node;
}

/**
 * A heartbeat claiming member `id` (with `body` when given), showing member `shown`'s
 * certificate (its own by default; null: none).
 */
function heartbeat(
  node: ReturnType<typeof cluster>,
  id: string,
  secret: string,
  body?: unknown,
  shown: number | null = Number(id),
) {
  return createInternalApi(node.deps).request(
    "/v1/internal/heartbeat",
    {
      method: "POST",
      headers: {
        [MEMBER_HEADER]: id,
        authorization: `Bearer ${secret}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    },
    shown !== null && MEMBER_CERTS.has(shown) ? asMember(shown) : {},
  );
}

describe("POST /v1/internal/heartbeat", () => {
  test("the leader records the member and answers with the peer-list version and ages", async () => {
    const node = cluster();
    const response = await heartbeat(node, "2", NODE_2_SECRET);
    assert.equal(response.status, 200);
    const body = (await response.json()) as HeartbeatResponse;
    assert.deepEqual(body, {
      leader: 1,
      term: 2,
      peersVersion: 2,
      heardAgoMs: { 2: 0 },
      disks: {},
    });
    assert.equal(node.deps.heartbeats.lastHeard(2), 50_000);
  });

  test("a heartbeat's data-dir disk is kept and handed to every member; a malformed one is not", async () => {
    const node = cluster();
    const disk = { freeBytes: 1024, totalBytes: 64 * 1024 ** 2 };
    const response = await heartbeat(node, "2", NODE_2_SECRET, { disk });
    assert.equal(response.status, 200);
    assert.deepEqual(((await response.json()) as HeartbeatResponse).disks, { 2: disk });
    for (const bad of [{ freeBytes: 2, totalBytes: 1 }, { freeBytes: -1, totalBytes: 9 }, "full"]) {
      const other = cluster();
      assert.equal((await heartbeat(other, "2", NODE_2_SECRET, { disk: bad })).status, 200);
      assert.equal(other.deps.heartbeats.disk(2), undefined, JSON.stringify(bad));
    }
  });

  test("a heartbeat's resources are kept for the watchdog; ones beyond the bounds are not", async () => {
    const node = cluster();
    const resources = { cores: 2, memoryBytes: 3 * 1024 ** 3 };
    assert.equal((await heartbeat(node, "2", NODE_2_SECRET, { resources })).status, 200);
    assert.deepEqual(node.deps.heartbeats.resources(2), resources);
    for (const bad of [{ cores: 4097, memoryBytes: 1 }, { cores: 2 }, "lots"]) {
      const other = cluster();
      const response = await heartbeat(other, "2", NODE_2_SECRET, { resources: bad });
      assert.equal(response.status, 200, "the heartbeat itself is taken");
      assert.equal(other.deps.heartbeats.lastHeard(2), 50_000);
      assert.equal(other.deps.heartbeats.resources(2), undefined, JSON.stringify(bad));
    }
  });

  const refused: [string, string, string][] = [
    ["another member's secret", "2", MEMBER_SECRET],
    ["the join token", "2", TOKEN_SECRET],
    ["an unknown id", "9", NODE_2_SECRET],
    ["no id", "", NODE_2_SECRET],
  ];
  for (const [what, id, secret] of refused) {
    test(`${what} is 401 and nothing is recorded`, async () => {
      const node = cluster();
      const response = await heartbeat(node, id, secret);
      assert.equal(response.status, 401);
      assert.equal(node.deps.heartbeats.lastHeard(2), undefined);
    });
  }

  test("the right secret without the member's own certificate is 401 and nothing is recorded", async () => {
    for (const shown of [1, 3, null]) {
      const node = cluster();
      const response = await heartbeat(node, "2", NODE_2_SECRET, undefined, shown);
      assert.equal(response.status, 401, `showing ${shown ?? "no"} certificate`);
      assert.match(
        ((await response.json()) as { error: string }).error,
        /did not show node 2's key/,
      );
      assert.equal(node.deps.heartbeats.lastHeard(2), undefined);
    }
  });

  /** Node 2's heartbeats to `node`, saying `version` in the protocol header (none if undefined). */
  const heartbeatSaying = (node: ReturnType<typeof cluster>) => {
    const app = createInternalApi(node.deps);
    return (version?: string) =>
      app.request(
        "/v1/internal/heartbeat",
        {
          method: "POST",
          headers: {
            [MEMBER_HEADER]: "2",
            authorization: `Bearer ${NODE_2_SECRET}`,
            ...(version === undefined ? {} : { [PROTOCOL_HEADER]: version }),
          },
        },
        asMember(2),
      );
  };

  test("a member of another major protocol version is 400 naming both, logged once a minute; another minor is answered", async () => {
    const node = cluster();
    const call = heartbeatSaying(node);
    const newer = await call(`${PROTOCOL_VERSION.major + 1}.0`);
    assert.equal(newer.status, 400);
    assert.match(
      ((await newer.json()) as { error: string }).error,
      new RegExp(
        `node 2 speaks protocol ${PROTOCOL_VERSION.major + 1}\\.0, this node ${PROTOCOL_VERSION.major}\\.${PROTOCOL_VERSION.minor}`,
      ),
    );
    assert.equal(node.deps.heartbeats.lastHeard(2), undefined);
    assert.equal((await call(`${PROTOCOL_VERSION.major + 1}.0`)).status, 400);
    assert.deepEqual(node.warnings, [
      `internal API: refusing the calls of node 2: it speaks protocol ${PROTOCOL_VERSION.major + 1}.0, this node ${PROTOCOL_VERSION.major}.${PROTOCOL_VERSION.minor}`,
    ]);
    const minor = await call(`${PROTOCOL_VERSION.major}.${PROTOCOL_VERSION.minor + 3}`);
    assert.equal(minor.status, 200);
    assert.equal(node.warnings.length, 1);
  });

  test("once the cluster speaks 1.2, a member of 1.1 (or one sending no version: 1.0) is 426 naming the versions and the fix, logged once a minute; the heartbeat records the version", async () => {
    const node = cluster();
    const call = heartbeatSaying(node);
    assert.equal((await call("1.1")).status, 200, "the baseline cluster takes 1.1");
    assert.deepEqual(node.deps.heartbeats.protocol(2), { major: 1, minor: 1 });
    node.fsm.apply(11, encodeCommand({ type: "ClusterProtocol", major: 1, minor: 2 }));
    const behind = await call("1.1");
    assert.equal(behind.status, 426);
    const ours = `${PROTOCOL_VERSION.major}.${PROTOCOL_VERSION.minor}`;
    assert.deepEqual(await behind.json(), {
      error: `node 2 speaks protocol 1.1, this node ${ours}, and the cluster's protocol is 1.2: run a mill of protocol 1.2 or later on it`,
    });
    assert.equal((await call()).status, 426, "no header: the baseline");
    assert.deepEqual(node.warnings, [
      `internal API: refusing the calls of node 2: it speaks protocol 1.1, this node ${ours}, and the cluster's protocol is 1.2`,
    ]);
    assert.equal((await call("1.2")).status, 200);
    assert.deepEqual(node.deps.heartbeats.protocol(2), { major: 1, minor: 2 });
  });

  test("a departed node is 403 with the way back", async () => {
    const node = cluster();
    node.fsm.apply(11, encodeCommand({ type: "NodeRemove", id: 2, at: 1 }));
    const response = await heartbeat(node, "2", NODE_2_SECRET);
    assert.equal(response.status, 403);
    assert.match(((await response.json()) as { error: string }).error, /mill join/);
  });

  test("one kept-alive connection: its certificate is judged on every call, so a removal refuses the next", async () => {
    const node = cluster();
    const api = createInternalApi(node.deps);
    // One TLS connection: the Node adapter hands its calls one certificate object.
    const connection = asMember(2);
    const call = (id: string, secret: string) =>
      api.request(
        "/v1/internal/heartbeat",
        {
          method: "POST",
          headers: { [MEMBER_HEADER]: id, authorization: `Bearer ${secret}` },
        },
        connection,
      );
    assert.equal((await call("2", NODE_2_SECRET)).status, 200);
    assert.equal((await call("2", NODE_2_SECRET)).status, 200);
    // Node 2's connection cannot speak for node 1, though node 1's secret is right.
    assert.equal((await call("1", MEMBER_SECRET)).status, 401);
    node.fsm.apply(11, encodeCommand({ type: "NodeRemove", id: 2, at: 1 }));
    const removed = await call("2", NODE_2_SECRET);
    assert.equal(removed.status, 403);
    assert.match(((await removed.json()) as { error: string }).error, /node 2 has left/);
  });

  test("a follower answers 421 naming the leader and records nothing", async () => {
    const node = cluster();
    node.role = "follower";
    node.leader = 3;
    const response = await heartbeat(node, "2", NODE_2_SECRET);
    assert.equal(response.status, 421);
    assert.match(((await response.json()) as { error: string }).error, /node 3/);
    assert.equal(node.deps.heartbeats.lastHeard(2), undefined);
  });
});

describe("GET /v1/internal/peers", () => {
  test("any member pulls the current peer list", async () => {
    const response = await createInternalApi(cluster().deps).request(
      "/v1/internal/peers",
      {
        headers: { [MEMBER_HEADER]: "1", authorization: `Bearer ${MEMBER_SECRET}` },
      },
      asMember(1),
    );
    assert.equal(response.status, 200);
    const body = (await response.json()) as PeerList;
    assert.equal(body.peersVersion, 2);
    assert.deepEqual(
      body.peers.map((p) => [p.name, p.meshAddress, p.raftAddress]),
      [
        ["node-1", "10.99.0.1", "10.99.0.1:4401"],
        ["node-2", "10.99.0.2", "10.99.0.2:4401"],
      ],
    );
  });

  test("the public routes do not exist here", async () => {
    const response = await createInternalApi(cluster().deps).request("/v1/status", {
      headers: { authorization: `Bearer ${TOKEN_SECRET}` },
    });
    assert.equal(response.status, 404);
  });
});
