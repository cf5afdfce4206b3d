import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createPublicApi } from "../../../lib/api/public.ts";
import {
  type DrainResponse,
  FORWARDED_HEADER,
  type RemoveResponse,
} from "../../../lib/api/wire.ts";
import { decodeCommand, encodeCommand } from "../../../lib/cluster/commands.ts";
import type { NodesJson, StatusJson } from "../../../lib/cluster/views.ts";
import { register } from "../cluster/fixtures.ts";
import { type FakeNode, fakeNode, postInternal, TOKEN_SECRET } from "./fakes.ts";

const AUTH = { authorization: `Bearer ${TOKEN_SECRET}` };

function call(
  node: FakeNode,
  method: string,
  path: string,
  headers: Record<string, string> = AUTH,
) {
  return createPublicApi(node.deps).request(path, { method, headers });
}

/** node-1 (leader) and node-2, with web's two replicas spread over both and running. */
async function twoNodes(): Promise<FakeNode> {
  const node = fakeNode();
  node.fsm.apply(100, encodeCommand(register("node-2", 2)));
  const run = await createPublicApi(node.deps).request("/v1/workloads", {
    method: "POST",
    headers: { ...AUTH, "content-type": "application/json" },
    body: JSON.stringify({ name: "web", replicas: 2, command: ["sleep", "1000"] }),
  });
  assert.equal(run.status, 200);
  node.proposals.length = 0;
  return node;
}

describe("POST /v1/nodes/NAME/drain", () => {
  test("commits NodeDrain and answers what is left to move; status shows draining", async () => {
    const node = await twoNodes();
    const response = await call(node, "POST", "/v1/nodes/node-2/drain");
    assert.equal(response.status, 200);
    const body = (await response.json()) as DrainResponse;
    assert.deepEqual(
      [body.name, body.status, body.draining, body.remaining.length, body.blocked.length],
      ["node-2", "draining", true, 1, 0],
    );
    assert.deepEqual(
      node.proposals.map((bytes) => {
        const decoded = decodeCommand(bytes);
        return decoded.ok && decoded.value.type;
      }),
      ["NodeDrain"],
    );
    const status = (await (await call(node, "GET", "/v1/status")).json()) as StatusJson;
    assert.deepEqual(
      status.nodes.map((entry) => entry.status),
      ["ready", "draining"],
    );
    const progress = await call(node, "GET", "/v1/nodes/node-2/drain");
    assert.equal(((await progress.json()) as DrainResponse).remaining.length, 1);
  });

  test("a replica with no room elsewhere is reported blocked with the reason", async () => {
    const node = await twoNodes();
    // node-1 holds web's other replica, so the spread rule would still fit it, but node-1 is
    // draining too: no schedulable node is left.
    await call(node, "POST", "/v1/nodes/node-1/drain");
    const body = (await (
      await call(node, "POST", "/v1/nodes/node-2/drain")
    ).json()) as DrainResponse;
    assert.equal(body.blocked.length, 1);
    assert.match(body.blocked[0]!.reason, /no room for another replica/);
  });

  test("undrain commits NodeUndrain once; a second one changes nothing", async () => {
    const node = await twoNodes();
    await call(node, "POST", "/v1/nodes/node-2/drain");
    const first = await call(node, "POST", "/v1/nodes/node-2/undrain");
    assert.deepEqual(await first.json(), { name: "node-2", changed: true });
    const second = await call(node, "POST", "/v1/nodes/node-2/undrain");
    assert.deepEqual(await second.json(), { name: "node-2", changed: false });
    assert.equal(node.fsm.state.nodes.get(2)!.draining, undefined);
  });

  const refused: [string, string, string, number][] = [
    ["an invalid name", "POST", "/v1/nodes/Node_2/drain", 400],
    ["an unknown name", "POST", "/v1/nodes/node-9/drain", 404],
    ["an unknown name on undrain", "POST", "/v1/nodes/node-9/undrain", 404],
    ["an invalid name on the progress read", "GET", "/v1/nodes/-x/drain", 400],
  ];
  for (const [what, method, path, code] of refused) {
    test(`${what} is ${code} naming the field, nothing proposed`, async () => {
      const node = await twoNodes();
      const response = await call(node, method, path);
      assert.equal(response.status, code);
      assert.equal(((await response.json()) as { field: string }).field, "name");
      assert.equal(node.proposals.length, 0);
    });
  }

  test("without the token: 401 and nothing proposed", async () => {
    const node = await twoNodes();
    for (const path of ["/v1/nodes/node-2/drain", "/v1/nodes/node-2/undrain"]) {
      const response = await call(node, "POST", path, { authorization: "Bearer wrong" });
      assert.equal(response.status, 401);
    }
    assert.equal(node.proposals.length, 0);
  });

  test("a follower forwards the write to the leader once", async () => {
    const node = await twoNodes();
    node.role = "follower";
    node.leader = 2;
    const response = await call(node, "POST", "/v1/nodes/node-2/drain");
    assert.deepEqual(await response.json(), { from: "leader" });
    assert.equal(node.forwarded[0]?.headers.get(FORWARDED_HEADER), "1");
    assert.equal(node.proposals.length, 0);
  });
});

/** node-1 (leader), node-2 and node-3, all voters; web runs 2 replicas on node-1 and node-2. */
async function threeVoters(): Promise<FakeNode> {
  const node = await twoNodes();
  node.fsm.apply(101, encodeCommand(register("node-3", 3)));
  for (const id of [2, 3]) await node.deps.raft.addVoter(id);
  return node;
}

function removedKinds(node: FakeNode): (string | false)[] {
  return node.proposals.map((bytes) => {
    const decoded = decodeCommand(bytes);
    return decoded.ok && decoded.value.type;
  });
}

describe("DELETE /v1/nodes/NAME", () => {
  test("an idle follower is removed: one removal carrying NodeRemove, it leaves the views", async () => {
    const node = await threeVoters();
    const response = await call(node, "DELETE", "/v1/nodes/node-3");
    assert.equal(response.status, 200);
    assert.deepEqual((await response.json()) as RemoveResponse, {
      name: "node-3",
      id: 3,
      rescheduled: 0,
    });
    assert.deepEqual(node.removedServers, [3]);
    assert.equal(node.fsm.state.nodes.get(3)!.status, "left");
    assert.deepEqual(removedKinds(node), [], "nothing proposed besides the removal itself");
    const again = await call(node, "DELETE", "/v1/nodes/node-3");
    assert.equal(again.status, 404);
  });

  test("a node holding live allocations is refused with the fix; --force removes it", async () => {
    const node = await threeVoters();
    const refused = await call(node, "DELETE", "/v1/nodes/node-2");
    assert.equal(refused.status, 409);
    assert.match(
      ((await refused.json()) as { error: string }).error,
      /node-2 still holds 1 live allocation\(s\): run mill drain node-2 first, or mill remove node-2 --force/,
    );
    assert.deepEqual(node.removedServers, []);
    const forced = await call(node, "DELETE", "/v1/nodes/node-2?force=true");
    assert.equal(forced.status, 200);
    assert.equal(((await forced.json()) as RemoveResponse).rescheduled, 1);
    assert.equal(node.fsm.state.nodes.get(2)!.status, "left");
  });

  test("removing a live voter while another is down is refused (no quorum left); a down one is not", async () => {
    const node = await threeVoters();
    assert.equal((await call(node, "DELETE", "/v1/workloads/web")).status, 200);
    node.fsm.apply(102, encodeCommand({ type: "NodeDown", id: 3, at: 1 }));
    const refused = await call(node, "DELETE", "/v1/nodes/node-2?force=false");
    assert.equal(refused.status, 409);
    assert.match(
      ((await refused.json()) as { error: string }).error,
      /would leave 2 voters of which 1 are up, short of a quorum of 2: bring node-3 back first/,
    );
    const down = await call(node, "DELETE", "/v1/nodes/node-3");
    assert.equal(down.status, 200);
    assert.deepEqual(node.removedServers, [3]);
  });

  test("the leader hands leadership to an up voter first, then forwards the removal", async () => {
    const node = await threeVoters();
    const response = await call(node, "DELETE", "/v1/nodes/node-1?force=true");
    assert.deepEqual(await response.json(), { from: "leader" });
    assert.deepEqual(node.transfers.length, 1);
    assert.ok([2, 3].includes(node.transfers[0]!));
    assert.deepEqual(node.removedServers, []);
    assert.equal(node.forwarded[0]?.method, "DELETE");
  });

  test("the last voter is never removed, not even with --force", async () => {
    const node = fakeNode();
    const response = await call(node, "DELETE", "/v1/nodes/node-1?force=true");
    assert.equal(response.status, 409);
    assert.match(((await response.json()) as { error: string }).error, /last voter/);
    assert.deepEqual(node.removedServers, []);
  });

  test("bad input is 400 naming the field; no token is 401; nothing removed", async () => {
    const node = await threeVoters();
    const cases: [string, number, string | undefined][] = [
      ["/v1/nodes/node-3?force=yes", 400, "force"],
      ["/v1/nodes/Node_3", 400, "name"],
      ["/v1/nodes/node-9", 404, "name"],
    ];
    for (const [path, code, field] of cases) {
      const response = await call(node, "DELETE", path);
      assert.equal(response.status, code, path);
      assert.equal(((await response.json()) as { field?: string }).field, field, path);
    }
    const unauthorised = await call(node, "DELETE", "/v1/nodes/node-3", {
      authorization: "Bearer nope",
    });
    assert.equal(unauthorised.status, 401);
    assert.deepEqual(node.removedServers, []);
  });
});

describe("POST /v1/internal/version", () => {
  const report = (node: FakeNode, body: unknown, secret?: string) =>
    postInternal(node, "/v1/internal/version", body, secret);

  test("the leader records the member's version once; the same again changes nothing", async () => {
    const node = fakeNode();
    const first = await report(node, { version: "0.3.0" });
    assert.deepEqual(await first.json(), { changed: true });
    assert.equal(node.fsm.state.nodes.get(1)!.version, "0.3.0");
    const again = await report(node, { version: "0.3.0" });
    assert.deepEqual(await again.json(), { changed: false });
    const nodes = (await (await call(node, "GET", "/v1/nodes")).json()) as NodesJson;
    assert.equal(nodes.nodes[0]!.version, "0.3.0");
  });

  test("a bad version is 400 naming it, a wrong secret 401; nothing proposed", async () => {
    const node = fakeNode();
    const bad = await report(node, { version: "../../x" });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { field: string }).field, "version");
    assert.equal((await report(node, { version: "0.3.0" }, "wrong")).status, 401);
    assert.equal(node.proposals.length, 0);
  });
});
