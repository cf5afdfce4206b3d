import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createPublicApi } from "../../../lib/api/public.ts";
import { JoinLedger } from "../../../lib/api/replay.ts";
import { joinBody, publicKey } from "../cluster/fixtures.ts";
import { type FakeNode, fakeNode, TOKEN_SECRET } from "./fakes.ts";

describe("JoinLedger", () => {
  test("an id is bound to its first registration; identical retries pass", () => {
    const ledger = new JoinLedger();
    assert.equal(ledger.conflicts("r1", "A"), false);
    ledger.remember("r1", "A");
    assert.equal(ledger.conflicts("r1", "A"), false);
    assert.equal(ledger.conflicts("r1", "B"), true);
    assert.equal(ledger.conflicts("r2", "B"), false);
  });

  test("memory is bounded: the oldest id is forgotten first", () => {
    const ledger = new JoinLedger(2);
    ledger.remember("r1", "A");
    ledger.remember("r2", "A");
    ledger.remember("r3", "A");
    assert.equal(ledger.conflicts("r1", "B"), false);
    assert.equal(ledger.conflicts("r3", "B"), true);
  });
});

describe("a replayed POST /v1/join", () => {
  const join = (app: ReturnType<typeof createPublicApi>, body: unknown) =>
    app.request("/v1/join", {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN_SECRET}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });

  function joined(): { fake: FakeNode; app: ReturnType<typeof createPublicApi> } {
    const fake = fakeNode();
    return { fake, app: createPublicApi(fake.deps) };
  }

  test("verbatim, it repeats the same registration and commits nothing new", async () => {
    const { fake, app } = joined();
    assert.equal((await join(app, joinBody())).status, 200);
    const snapshot = fake.fsm.snapshot();
    const again = await join(app, joinBody());
    assert.equal(again.status, 200);
    assert.equal(((await again.json()) as { node: { id: number } }).node.id, 2);
    assert.deepEqual(fake.fsm.snapshot(), snapshot);
  });

  for (const [what, change] of [
    ["another address", { advertise: "10.0.0.66" }],
    ["another key", { wgPublicKey: publicKey(66) }],
    ["another name and key", { name: "node-66", wgPublicKey: publicKey(66) }],
    ["another member secret", { memberSecretHash: "c".repeat(64) }],
  ] as const) {
    test(`with ${what} under the same request id, it is 409 and nothing changes`, async () => {
      const { fake, app } = joined();
      assert.equal((await join(app, joinBody())).status, 200);
      const snapshot = fake.fsm.snapshot();
      const proposals = fake.proposals.length;
      const replay = await join(app, joinBody(change));
      assert.equal(replay.status, 409);
      const error = (await replay.json()) as { error: string; field: string };
      assert.equal(error.field, "requestId");
      assert.match(error.error, /already used with other details/);
      assert.equal(fake.proposals.length, proposals);
      assert.deepEqual(fake.fsm.snapshot(), snapshot);
    });
  }
});
