import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createInternalApi } from "../../../lib/api/internal.ts";
import { createPublicApi } from "../../../lib/api/public.ts";
import {
  type AllocationsResponse,
  FORWARDED_HEADER,
  MEMBER_HEADER,
  type WorkloadRunResponse,
  type WorkloadStatusResponse,
} from "../../../lib/api/wire.ts";
import type { StatusJson } from "../../../lib/cluster/views.ts";
import { asMember, type FakeNode, fakeNode, MEMBER_SECRET, TOKEN_SECRET } from "./fakes.ts";

const AUTH = { authorization: `Bearer ${TOKEN_SECRET}` };
const WEB = { name: "web", replicas: 2, cpu: "0.5", memory: "1G", command: ["sleep", "1000"] };

function call(node: FakeNode, method: string, path: string, body?: unknown, headers = AUTH) {
  return createPublicApi(node.deps).request(path, {
    method,
    headers: { "content-type": "application/json", ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

function report(node: FakeNode, body: unknown) {
  return createInternalApi(node.deps).request(
    "/v1/internal/allocation-status",
    {
      method: "POST",
      headers: {
        [MEMBER_HEADER]: "1",
        authorization: `Bearer ${MEMBER_SECRET}`,
        "content-type": "application/json",
      },
      body: JSON.stringify(body),
    },
    asMember(1),
  );
}

describe("POST /v1/workloads", () => {
  test("the leader plans, commits and answers with the progress", async () => {
    const node = fakeNode();
    const response = await call(node, "POST", "/v1/workloads", WEB);
    assert.equal(response.status, 200);
    const body = (await response.json()) as WorkloadRunResponse;
    assert.equal(body.changed, true);
    assert.deepEqual(
      [body.progress.replicas, body.progress.pending, body.progress.done],
      [2, 2, false],
    );
    assert.equal(node.proposals.length, 1);
    assert.equal(node.fsm.state.workloads.allocations.size, 2);
  });

  test("the same spec again changes nothing and proposes nothing", async () => {
    const node = fakeNode();
    await call(node, "POST", "/v1/workloads", WEB);
    const again = (await (await call(node, "POST", "/v1/workloads", WEB)).json()) as {
      changed: boolean;
    };
    assert.equal(again.changed, false);
    assert.equal(node.proposals.length, 1);
  });

  const invalid: [string, Record<string, unknown>, string][] = [
    ["a name that is not a DNS label", { name: "Web_1" }, "name"],
    ["negative cpu", { cpu: -1 }, "cpu"],
    ["an unknown memory unit", { memory: "1Q" }, "memory"],
    ["zero replicas", { replicas: 0 }, "replicas"],
    ["an empty command", { command: [] }, "command"],
  ];
  for (const [what, change, field] of invalid) {
    test(`${what} is 400 naming ${field}, nothing proposed`, async () => {
      const node = fakeNode();
      const response = await call(node, "POST", "/v1/workloads", { ...WEB, ...change });
      assert.equal(response.status, 400);
      assert.equal(((await response.json()) as { field: string }).field, field);
      assert.equal(node.proposals.length, 0);
    });
  }

  test("more replicas than the nodes hold is 409 naming the shortfall, nothing proposed", async () => {
    const node = fakeNode();
    const response = await call(node, "POST", "/v1/workloads", { ...WEB, replicas: 9 });
    assert.equal(response.status, 409);
    const { error } = (await response.json()) as { error: string };
    assert.match(error, /needs 9 replicas of 0.5 cpu \/ 1G; room for 8/);
    assert.equal(node.proposals.length, 0);
  });

  test("without the token it is 401; a follower forwards and proposes nothing", async () => {
    const node = fakeNode();
    const denied = await call(node, "POST", "/v1/workloads", WEB, { authorization: "Bearer x" });
    assert.equal(denied.status, 401);
    node.role = "follower";
    const forwarded = await call(node, "POST", "/v1/workloads", WEB);
    assert.equal(forwarded.status, 200);
    assert.equal(node.forwarded[0]?.headers.get(FORWARDED_HEADER), "1");
    assert.equal(node.proposals.length, 0);
  });

  test("no quorum is 503", async () => {
    const node = fakeNode();
    node.propose = () => new Promise(() => {});
    const response = await call(node, "POST", "/v1/workloads", WEB);
    assert.equal(response.status, 503);
  });
});

describe("reading workloads", () => {
  test("GET /v1/workloads/NAME answers progress and rows; an unknown name is 404", async () => {
    const node = fakeNode();
    await call(node, "POST", "/v1/workloads", WEB);
    const response = await call(node, "GET", "/v1/workloads/web");
    const body = (await response.json()) as WorkloadStatusResponse;
    assert.equal(body.progress.name, "web");
    assert.deepEqual(
      body.allocations.map((row) => [row.id, row.node, row.status]),
      [
        [1, "node-1", "pending"],
        [2, "node-1", "pending"],
      ],
    );
    assert.equal((await call(node, "GET", "/v1/workloads/api")).status, 404);
  });

  test("GET /v1/allocations lists every allocation; /v1/status counts the running ones", async () => {
    const node = fakeNode();
    await call(node, "POST", "/v1/workloads", WEB);
    await report(node, { id: 1, status: "running", restarts: 0 });
    const list = (await (await call(node, "GET", "/v1/allocations")).json()) as AllocationsResponse;
    assert.deepEqual(
      list.allocations.map((row) => row.status),
      ["running", "pending"],
    );
    assert.equal(list.now, 50_000);
    const status = (await (await call(node, "GET", "/v1/status")).json()) as StatusJson;
    assert.deepEqual(status.nodes[0]?.cpu, { used: 1, total: 4 });
    assert.equal(status.nodes[0]?.allocs, 1);
  });
});

describe("DELETE /v1/workloads/NAME", () => {
  test("stops the workload and says how many allocations stop", async () => {
    const node = fakeNode();
    await call(node, "POST", "/v1/workloads", WEB);
    const response = await call(node, "DELETE", "/v1/workloads/web");
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { name: "web", stopping: 2 });
    assert.equal(node.fsm.state.workloads.workloads.size, 0);
  });

  test("an unknown name is 404 and a bad one 400, both without a proposal", async () => {
    const node = fakeNode();
    assert.equal((await call(node, "DELETE", "/v1/workloads/web")).status, 404);
    assert.equal((await call(node, "DELETE", "/v1/workloads/Web_1")).status, 400);
    assert.equal(node.proposals.length, 0);
  });

  test("a follower forwards the stop", async () => {
    const node = fakeNode();
    node.role = "follower";
    await call(node, "DELETE", "/v1/workloads/web");
    assert.equal(node.forwarded[0]?.method, "DELETE");
    assert.equal(node.proposals.length, 0);
  });
});

describe("POST /v1/internal/allocation-status", () => {
  test("commits the member's report for its own allocation", async () => {
    const node = fakeNode();
    await call(node, "POST", "/v1/workloads", WEB);
    const response = await report(node, { id: 2, status: "running", restarts: 3 });
    assert.equal(response.status, 200);
    const allocation = node.fsm.state.workloads.allocations.get(2)!;
    assert.deepEqual([allocation.status, allocation.restarts], ["running", 3]);
  });

  test("an unknown allocation is 409, a malformed report 400, a follower 421", async () => {
    const node = fakeNode();
    assert.equal((await report(node, { id: 7, status: "running", restarts: 0 })).status, 409);
    const bad = await report(node, { id: 1, status: "asleep", restarts: 0 });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { field: string }).field, "status");
    node.role = "follower";
    assert.equal((await report(node, { id: 1, status: "running", restarts: 0 })).status, 421);
  });
});
