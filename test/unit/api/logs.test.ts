import assert from "node:assert/strict";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { createInternalApi } from "../../../lib/api/internal.ts";
import { createPublicApi } from "../../../lib/api/public.ts";
import { MEMBER_HEADER } from "../../../lib/api/wire.ts";
import { chooseAllocations, parseTail } from "../../../lib/cli/logs.ts";
import {
  AllocationDirs,
  LOG_CHUNK_BYTES,
  type LogRequest,
  logStart,
  parseLogRequest,
} from "../../../lib/workloads/allocation-dirs.ts";
import type { PsRow } from "../../../lib/workloads/view.ts";
import { asMember, type FakeNode, fakeNode, MEMBER_SECRET, TOKEN_SECRET } from "./fakes.ts";

const AUTH = { authorization: `Bearer ${TOKEN_SECRET}` };
const WEB = { name: "web", replicas: 1, cpu: "0.5", memory: "1G", command: ["sleep", "1000"] };

function get(node: FakeNode, path: string, headers: Record<string, string> = AUTH) {
  return createPublicApi(node.deps).request(path, { headers });
}

/** Runs one replica of "web" on the fake's node-1: allocation 1. */
async function runWeb(node: FakeNode): Promise<void> {
  const response = await createPublicApi(node.deps).request("/v1/workloads", {
    method: "POST",
    headers: { ...AUTH, "content-type": "application/json" },
    body: JSON.stringify(WEB),
  });
  assert.equal(response.status, 200);
}

describe("mill logs: the API", () => {
  test("an allocation's output is read on the node that holds it, a chunk at a time", async () => {
    const node = fakeNode();
    await runWeb(node);
    const asked: [number, number, LogRequest][] = [];
    node.allocationLog = async (holder, id, request) => {
      asked.push([holder, id, request]);
      return { text: "hello\n", start: 0, offset: 6, size: 6 };
    };
    const response = await get(node, "/v1/allocations/1/log?tail=5");
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { text: "hello\n", start: 0, offset: 6, size: 6 });
    assert.deepEqual(asked, [[1, 1, { tail: 5 }]]);
  });

  test("refusals: no token, bad id, bad query, unknown allocation, a holder that cannot be reached", async () => {
    const node = fakeNode();
    await runWeb(node);
    assert.equal((await get(node, "/v1/allocations/1/log", {})).status, 401);
    for (const path of [
      "/v1/allocations/0/log",
      "/v1/allocations/..%2Fx/log",
      "/v1/allocations/1/log?tail=0",
      "/v1/allocations/1/log?from=-1",
    ]) {
      const response = await get(node, path);
      assert.equal(response.status, 400, path);
    }
    const unknown = await get(node, "/v1/allocations/99/log");
    assert.equal(unknown.status, 404);
    assert.match(
      ((await unknown.json()) as { error: string }).error,
      /no allocation 99: see mill ps/,
    );
    node.allocationLog = async () => {
      throw new Error("connect ECONNREFUSED");
    };
    const down = await get(node, "/v1/allocations/1/log");
    assert.equal(down.status, 503);
    assert.match(
      ((await down.json()) as { error: string }).error,
      /on node-1: connect ECONNREFUSED/,
    );
  });

  test("the internal route answers members only, with this node's own output", async () => {
    const node = fakeNode();
    node.allocationLog = async (holder, id) => ({
      text: `${holder}/${id}`,
      start: 0,
      offset: 3,
      size: 3,
    });
    const internal = createInternalApi(node.deps);
    const member = { [MEMBER_HEADER]: "1", authorization: `Bearer ${MEMBER_SECRET}` };
    const ok = await internal.request(
      "/v1/internal/allocations/7/log?from=0",
      { headers: member },
      asMember(1),
    );
    assert.equal(ok.status, 200);
    assert.equal(((await ok.json()) as { text: string }).text, "1/7");
    const token = await internal.request(
      "/v1/internal/allocations/7/log",
      { headers: AUTH },
      asMember(1),
    );
    assert.equal(token.status, 401);
  });
});

describe("mill logs: reading the output log", () => {
  test("from an offset, a tail of lines, a rotated log starts over, big logs come in chunks", () => {
    const dataDir = fs.mkdtempSync(join(tmpdir(), "mill-logs-"));
    try {
      const dirs = new AllocationDirs(dataDir);
      dirs.create(3);
      assert.equal(dirs.readLog(3, {}), undefined, "no log yet");
      fs.writeFileSync(join(dirs.dir(3), "output.log"), "one\ntwo\nthree\n");
      assert.deepEqual(dirs.readLog(3, { from: 0 }), {
        text: "one\ntwo\nthree\n",
        start: 0,
        offset: 14,
        size: 14,
      });
      assert.deepEqual(dirs.readLog(3, { tail: 2 }), {
        text: "two\nthree\n",
        start: 4,
        offset: 14,
        size: 14,
      });
      assert.equal(dirs.readLog(3, { tail: 9 })?.text, "one\ntwo\nthree\n");
      assert.equal(dirs.readLog(3, { from: 8 })?.text, "three\n");
      assert.equal(
        dirs.readLog(3, { from: 100 })?.text,
        "one\ntwo\nthree\n",
        "rotated: from the start",
      );
      fs.writeFileSync(join(dirs.dir(3), "output.log"), "x".repeat(LOG_CHUNK_BYTES + 10));
      const first = dirs.readLog(3, { from: 0 })!;
      assert.deepEqual([first.offset, first.size], [LOG_CHUNK_BYTES, LOG_CHUNK_BYTES + 10]);
      assert.equal(dirs.readLog(3, { from: first.offset })?.text, "x".repeat(10));
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test("a last line without a newline counts as a line", () => {
    const bytes = new TextEncoder().encode("a\nb\nc");
    assert.equal(logStart({ tail: 1 }, 5, bytes), 4);
    assert.equal(logStart({ tail: 2 }, 5, bytes), 2);
  });

  test("query and flag values are checked", () => {
    assert.deepEqual(parseLogRequest({ from: "12", tail: "3" }), {
      ok: true,
      value: { from: 12, tail: 3 },
    });
    for (const query of [
      { from: "1e3" },
      { from: "-1" },
      { tail: "0" },
      { tail: "100001" },
      { tail: "x" },
    ]) {
      assert.equal(parseLogRequest(query).ok, false, JSON.stringify(query));
    }
    assert.equal(parseTail("20"), 20);
    assert.equal(parseTail(undefined), undefined);
    assert.throws(() => parseTail("0"), /--tail "0" is not a line count/);
    assert.throws(() => parseTail("ten"), /--tail "ten" is not a line count/);
  });

  test("the live allocations are shown, else the newest", () => {
    const row = (id: number, status: PsRow["status"]) => ({ id, status }) as PsRow;
    assert.deepEqual(
      chooseAllocations([row(1, "lost"), row(2, "running"), row(3, "failing")]).map((r) => r.id),
      [2, 3],
    );
    assert.deepEqual(
      chooseAllocations([row(1, "lost"), row(4, "stopped")]).map((r) => r.id),
      [4],
    );
    assert.deepEqual(chooseAllocations([]), []);
  });
});
