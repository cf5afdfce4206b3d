import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import { createPublicApi } from "../../../lib/api/public.ts";
import type { DebugStateResponse, TokenRotateResponse } from "../../../lib/api/wire.ts";
import { type Command, decodeCommand, encodeCommand } from "../../../lib/cluster/commands.ts";
import { fingerprintOfPem } from "../../../lib/identity/fingerprint.ts";
import { hashSecret, parseToken } from "../../../lib/identity/token.ts";
import { createClusterIdentity } from "../../../lib/identity/x509.ts";
import { register } from "../cluster/fixtures.ts";
import { type FakeNode, fakeNode, IDENTITY, postInternal, TOKEN, TOKEN_SECRET } from "./fakes.ts";

const identity = createClusterIdentity();

const RAISE: Command = { type: "ClusterProtocol", major: 1, minor: 2 };

/** The fake one-node cluster, speaking protocol 1.2 (which rotation needs) unless `baseline`. */
function node(baseline = false): FakeNode {
  const fake = fakeNode();
  Object.assign(fake.deps, {
    tlsIdentity: () => ({ certPem: identity.certPem, keyPem: identity.keyPem }),
  });
  if (!baseline) fake.propose(encodeCommand(RAISE));
  return fake;
}

function call(fake: FakeNode, method: string, path: string, secret = TOKEN_SECRET) {
  return createPublicApi(fake.deps).request(path, {
    method,
    headers: { authorization: `Bearer ${secret}` },
  });
}

describe("POST /v1/token/rotate", () => {
  test("the leader stages a new token and identity, commits hash and fingerprint, answers the token", async () => {
    const fake = node();
    let stagedBeforeProposal = false;
    const apply = fake.propose;
    fake.propose = (data) => {
      stagedBeforeProposal = fake.held.length === 2;
      return apply(data);
    };
    const response = await call(fake, "POST", "/v1/token/rotate");
    assert.equal(response.status, 200);
    const { token } = (await response.json()) as TokenRotateResponse;
    const parsed = parseToken(token);
    const staged = fake.held[1]!;
    assert.equal(staged.token, token);
    assert.equal(parsed.fingerprint, fingerprintOfPem(staged.identity.certPem));
    assert.notEqual(parsed.fingerprint, fingerprintOfPem(identity.certPem), "a new identity");
    assert.notEqual(parsed.secret, TOKEN_SECRET);
    assert.equal(stagedBeforeProposal, true);
    const proposed = decodeCommand(fake.proposals[0]!);
    assert.deepEqual(proposed.ok && proposed.value, {
      type: "TokenRotate",
      tokenHash: hashSecret(parsed.secret),
      fingerprint: parsed.fingerprint,
    });
    assert.equal(fake.fsm.state.tlsFingerprint, parsed.fingerprint);
    assert.equal((await call(fake, "GET", "/v1/debug/state")).status, 401, "old token refused");
    assert.equal((await call(fake, "GET", "/v1/debug/state", parsed.secret)).status, 200);
  });

  test("after a rotation the whole token is checked against the committed fingerprint", async () => {
    const fake = node();
    const { token } = (await (
      await call(fake, "POST", "/v1/token/rotate")
    ).json()) as TokenRotateResponse;
    // This fake still serves the old identity, as a node does until it has fetched the new one.
    assert.equal((await call(fake, "GET", "/v1/debug/state", token)).status, 200);
    const oldPin = `mill_t_${parseToken(token).secret}.${fingerprintOfPem(identity.certPem)}`;
    const refused = await call(fake, "GET", "/v1/debug/state", oldPin);
    assert.equal(refused.status, 401);
    assert.match(((await refused.json()) as { error: string }).error, /for another cluster/);
  });

  test("a wrong token is 401 and nothing is staged or proposed", async () => {
    const fake = node();
    const response = await call(fake, "POST", "/v1/token/rotate", "x".repeat(32));
    assert.equal(response.status, 401);
    assert.equal(fake.held.length, 1);
    assert.equal(fake.proposals.length, 0);
  });

  test("a follower forwards the rotation to the leader", async () => {
    const fake = node();
    fake.role = "follower";
    fake.leader = 1;
    const response = await call(fake, "POST", "/v1/token/rotate");
    assert.equal(response.status, 200);
    assert.equal(fake.forwarded.length, 1);
    assert.equal(fake.proposals.length, 0);
  });

  test("refused with 409 naming the nodes of an older protocol until the cluster speaks 1.2; nothing staged or proposed", async () => {
    const fake = node(true);
    fake.propose(encodeCommand(register("node-2", 2)));
    fake.propose(encodeCommand(register("node-3", 3)));
    fake.deps.heartbeats.heard(2, 1000, { protocol: { major: 1, minor: 1 } });
    const response = await call(fake, "POST", "/v1/token/rotate");
    assert.equal(response.status, 409);
    assert.deepEqual(await response.json(), {
      error:
        "mill token rotate needs protocol 1.2 on every node, and node-2 speaks 1.1, node-3 (ready) has not shown its protocol to the leader: run a mill of protocol 1.2 or later there (or mill remove the node), then try again",
      field: "protocol",
    });
    assert.equal(fake.held.length, 1, "no token staged");
    assert.equal(fake.proposals.length, 0);
    fake.deps.heartbeats.heard(2, 2000, { protocol: { major: 1, minor: 2 } });
    fake.deps.heartbeats.heard(3, 2000, { protocol: { major: 1, minor: 2 } });
    const waiting = await call(fake, "POST", "/v1/token/rotate");
    assert.equal(waiting.status, 409, "every node speaks 1.2, the raise is not committed yet");
    fake.propose(encodeCommand(RAISE));
    assert.equal((await call(fake, "POST", "/v1/token/rotate")).status, 200);
  });

  test("no quorum is 503 and the token in use is unchanged", async () => {
    const fake = node();
    fake.propose = () => new Promise(() => {});
    const response = await call(fake, "POST", "/v1/token/rotate");
    assert.equal(response.status, 503);
    assert.equal((await call(fake, "GET", "/v1/debug/state")).status, 200);
  });
});

describe("GET /v1/debug/state", () => {
  test("answers the log position and the sha256 of the snapshot, which rotation changes", async () => {
    const fake = node();
    const read = async () =>
      (await (await call(fake, "GET", "/v1/debug/state")).json()) as DebugStateResponse;
    const before = await read();
    const snapshotSha = createHash("sha256").update(fake.fsm.snapshot()).digest("hex");
    assert.deepEqual(before, { commit: 3, applied: 3, stateSha256: snapshotSha });
    const { token } = (await (
      await call(fake, "POST", "/v1/token/rotate")
    ).json()) as TokenRotateResponse;
    const secret = parseToken(token).secret;
    const after = (await (
      await call(fake, "GET", "/v1/debug/state", secret)
    ).json()) as DebugStateResponse;
    assert.equal(after.commit, 4);
    assert.notEqual(after.stateSha256, before.stateSha256);
  });
});

describe("POST /v1/internal/token", () => {
  const share = (fake: FakeNode, body: unknown, secret?: string) =>
    postInternal(fake, "/v1/internal/token", body, secret);
  const committedHash = (fake: FakeNode) => fake.fsm.state.tokenHash;

  test("a member gets the token whose hash is committed and the identity it pins", async () => {
    const fake = node();
    const response = await share(fake, { tokenHash: committedHash(fake) });
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { token: TOKEN, tls: IDENTITY });
  });

  test("after a rotation a member gets the new token and the new identity", async () => {
    const fake = node();
    const { token } = (await (
      await call(fake, "POST", "/v1/token/rotate")
    ).json()) as TokenRotateResponse;
    const response = await share(fake, { tokenHash: committedHash(fake) });
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { token, tls: fake.held[1]!.identity });
  });

  test("the cluster token is not a member secret: 401", async () => {
    const fake = node();
    const response = await share(fake, { tokenHash: committedHash(fake) }, TOKEN_SECRET);
    assert.equal(response.status, 401);
  });

  test("a hash that is not the committed one is 409 naming tokenHash", async () => {
    const fake = node();
    const response = await share(fake, { tokenHash: "0".repeat(64) });
    assert.equal(response.status, 409);
    assert.equal(((await response.json()) as { field: string }).field, "tokenHash");
  });

  test("a node that does not hold the committed token says so: 404", async () => {
    const fake = node();
    fake.held.length = 0;
    const response = await share(fake, { tokenHash: committedHash(fake) });
    assert.equal(response.status, 404);
    assert.match(((await response.json()) as { error: string }).error, /ask another member/);
  });

  test("a malformed hash is 400 naming tokenHash", async () => {
    const response = await share(node(), { tokenHash: "abc" });
    assert.equal(response.status, 400);
    assert.equal(((await response.json()) as { field: string }).field, "tokenHash");
  });
});
