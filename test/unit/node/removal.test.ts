import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { type AddressInfo, createServer as createNetServer } from "node:net";
import { describe, test } from "node:test";
import { createPublicApi } from "../../../lib/api/public.ts";
import type { RemovalAnswer } from "../../../lib/api/wire.ts";
import { encodeCommand } from "../../../lib/cluster/commands.ts";
import type { ClusterState } from "../../../lib/cluster/state.ts";
import { removalStatement } from "../../../lib/cluster/validate.ts";
import { createNodeIdentity, signWithNodeKey } from "../../../lib/identity/node-key.ts";
import type { ClusterIdentity } from "../../../lib/identity/x509.ts";
import {
  checkRemovalProof,
  type RemovalQuestion,
  removedPerMembers,
} from "../../../lib/node/removal.ts";
import { serveHttps } from "../../shared/https-server.ts";
import { fakeNode, IDENTITY, MEMBER_CERTS, memberKey } from "../api/fakes.ts";
import { applied, init, register } from "../cluster/fixtures.ts";

const CLUSTER = "c1";
const ASKER = 3;
const freshNonce = () => randomBytes(32).toString("base64url");

/** The members' side: the fake node-1 (leader) with node-2 and node-3, and node-3 removed. */
function members(removeAsker = true) {
  const node = fakeNode();
  node.fsm.apply(100, encodeCommand(register("node-2", 2, { nodeKey: memberKey(2) })));
  node.fsm.apply(101, encodeCommand(register("node-3", 3, { nodeKey: memberKey(3) })));
  assert.equal(node.fsm.state.nodes.get(ASKER)?.name, "node-3");
  if (removeAsker) node.fsm.apply(102, encodeCommand({ type: "NodeRemove", id: ASKER, at: 3000 }));
  node.proposals.length = 0;
  return node;
}

interface PublicEndpoint {
  readonly advertise: string;
  readonly apiPort: number;
}

/**
 * node-3's own last applied state, from before its removal: three members with their node keys,
 * node-1 and node-2 at these public endpoints. `left` nodes were removed before node-3 stopped
 * hearing.
 */
function askerState(
  endpoint?: PublicEndpoint,
  left: number[] = [],
  endpoint2: PublicEndpoint = { advertise: "10.0.0.2", apiPort: 4400 },
) {
  const { fsm } = applied([
    init({ clusterId: CLUSTER }),
    register("node-1", 1, { nodeKey: memberKey(1), ...endpoint }),
    register("node-2", 2, { nodeKey: memberKey(2), ...endpoint2 }),
    register("node-3", 3, { nodeKey: memberKey(3) }),
    ...left.map((id) => ({ type: "NodeRemove", id, at: 2500 }) as const),
  ]);
  return fsm.state;
}

function question(nonce: string, state: ClusterState = askerState()): RemovalQuestion {
  return { state, self: ASKER, clusterId: CLUSTER, nonce };
}

function ask(node: ReturnType<typeof fakeNode>, id: string, body: unknown) {
  return createPublicApi(node.deps).request(`/v1/members/${id}/removal`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

interface Forgery {
  readonly key?: ClusterIdentity;
  readonly cert?: string;
  readonly signer?: number;
  readonly clusterId?: string;
  readonly subject?: number;
  readonly removed?: boolean;
  readonly nonce: string;
  /** What the answer claims, when it differs from what was signed. */
  readonly claims?: Partial<RemovalAnswer>;
}

/** An answer signed by `key` (member 1's by default) over the statement these values make. */
function forge(forgery: Forgery): RemovalAnswer {
  const key = forgery.key ?? MEMBER_CERTS.get(1)!;
  const signer = forgery.signer ?? 1;
  const subject = forgery.subject ?? ASKER;
  const removed = forgery.removed ?? true;
  const statement = removalStatement(
    forgery.clusterId ?? CLUSTER,
    subject,
    removed,
    forgery.nonce,
    signer,
  );
  return {
    id: subject,
    removed,
    nonce: forgery.nonce,
    signer,
    signerCert: forgery.cert ?? key.certPem,
    signature: signWithNodeKey(key.keyPem, statement),
    ...forgery.claims,
  };
}

describe("POST /v1/members/ID/removal", () => {
  test("a removed node asks without a token: a signed answer its own check accepts, nothing committed", async () => {
    const node = members();
    const nonce = freshNonce();
    const response = await ask(node, String(ASKER), { nonce });
    assert.equal(response.status, 200);
    const answer = (await response.json()) as RemovalAnswer;
    assert.equal(answer.removed, true);
    assert.equal(answer.nonce, nonce);
    assert.equal(answer.signer, 1);
    assert.equal(answer.signerCert, MEMBER_CERTS.get(1)!.certPem);
    assert.ok(JSON.stringify(answer).length < 4096, "well under the asker's 16 KiB bound");
    assert.deepEqual(checkRemovalProof(answer, question(nonce)), { proven: true });
    assert.deepEqual(node.proposals, []);
  });

  test("a member asks: removed false, signed as well, and never taken as proof", async () => {
    const node = members(false);
    const nonce = freshNonce();
    const answer = (await (await ask(node, String(ASKER), { nonce })).json()) as RemovalAnswer;
    assert.equal(answer.removed, false);
    assert.deepEqual(checkRemovalProof(answer, question(nonce)), {
      proven: false,
      reason: "it does not say removed",
    });
    // The same signature claimed as "removed" does not verify.
    const flipped = checkRemovalProof({ ...answer, removed: true }, question(nonce));
    assert.deepEqual(flipped, { proven: false, reason: "it is not signed by node 1's key" });
  });

  test("a malformed nonce is 400 naming it, nothing committed", async () => {
    const node = members();
    const nonce = freshNonce();
    for (const body of [
      {},
      { nonce: nonce.slice(1) },
      { nonce: `${nonce}A` },
      { nonce: `${nonce.slice(2)}+/` },
      { nonce: 42 },
      { nonce: null },
    ]) {
      const response = await ask(node, String(ASKER), body);
      assert.equal(response.status, 400, JSON.stringify(body));
      const error = (await response.json()) as { field: string; error: string };
      assert.equal(error.field, "nonce");
      assert.match(error.error, /nonce is not a nonce: send 32 fresh random bytes/);
    }
    const notJson = await ask(node, String(ASKER), "{nonce");
    assert.equal(notJson.status, 400);
    assert.deepEqual(node.proposals, []);
  });

  test("a malformed id is 400 naming it, an id never seen 404", async () => {
    const node = members();
    const nonce = freshNonce();
    for (const id of ["0", "x", "-3", "99999999999999999"]) {
      const response = await ask(node, id, { nonce });
      assert.equal(response.status, 400, id);
      assert.equal(((await response.json()) as { field: string }).field, "id");
    }
    const unknown = await ask(node, "77", { nonce });
    assert.equal(unknown.status, 404);
    assert.deepEqual(await unknown.json(), { error: "no node 77 is known here", field: "id" });
    assert.deepEqual(node.proposals, []);
  });
});

describe("checkRemovalProof: only a member's key over the asker's own question", () => {
  const nonce = freshNonce();
  const outsider = createNodeIdentity();

  test("a member's signed answer for this nonce is proof", () => {
    assert.deepEqual(checkRemovalProof(forge({ nonce }), question(nonce)), { proven: true });
    const byNode2 = forge({ nonce, key: MEMBER_CERTS.get(2)!, signer: 2 });
    assert.deepEqual(checkRemovalProof(byNode2, question(nonce)), { proven: true });
  });

  const refusals: [string, unknown, string, ClusterState?][] = [
    [
      "a genuine answer to another nonce (a replay)",
      forge({ nonce: freshNonce() }),
      "another nonce",
    ],
    [
      "a replay with this nonce pasted in",
      forge({ nonce: freshNonce(), claims: { nonce } }),
      "not signed by node 1",
    ],
    ["an unsigned answer", { ...forge({ nonce }), signature: undefined }, "not signed by node 1"],
    ["an empty signature", forge({ nonce, claims: { signature: "" } }), "not signed by node 1"],
    [
      "a signer the asker does not know, with its own key",
      forge({ nonce, key: outsider, signer: 9 }),
      "signer 9 is no member",
    ],
    [
      "a member's id signed by another key, with that key's certificate",
      forge({ nonce, key: outsider }),
      "certificate is not node 1's key",
    ],
    [
      "another member's genuine key claiming to be node 1",
      forge({ nonce, key: MEMBER_CERTS.get(2)! }),
      "certificate is not node 1's key",
    ],
    [
      "node 1's certificate with another key's signature",
      forge({ nonce, key: outsider, cert: MEMBER_CERTS.get(1)!.certPem }),
      "not signed by node 1",
    ],
    ["a certificate that is not one", forge({ nonce, cert: "junk" }), "does not parse"],
    ["removed false, signed", forge({ nonce, removed: false }), "does not say removed"],
    [
      "removed signed as false, claimed true",
      forge({ nonce, removed: false, claims: { removed: true } }),
      "not signed by node 1",
    ],
    ["a statement for another cluster", forge({ nonce, clusterId: "c2" }), "not signed by node 1"],
    ["an answer about another node", forge({ nonce, subject: 2 }), "about node 2"],
    [
      "a statement about another node, claimed for the asker",
      forge({ nonce, subject: 2, claims: { id: ASKER } }),
      "not signed by node 1",
    ],
    [
      "a statement naming another signer",
      forge({ nonce, signer: 2, claims: { signer: 1 } }),
      "not signed by node 1",
    ],
    [
      "a member the asker saw leave",
      forge({ nonce }),
      "signer 1 is no member",
      askerState(undefined, [1]),
    ],
    ["no answer", null, "does not say removed"],
    ["a string", "removed", "does not say removed"],
    [
      "removed as a string",
      forge({ nonce, claims: { removed: "true" as never } }),
      "does not say removed",
    ],
  ];
  for (const [what, answer, reason, state] of refusals) {
    test(`refused: ${what}`, () => {
      const check = checkRemovalProof(answer, question(nonce, state));
      assert.equal(check.proven, false);
      assert.match((check as { reason: string }).reason, new RegExp(reason));
    });
  }
});

/** A loopback endpoint where nothing listens: a member that cannot be reached. */
async function closedEndpoint(): Promise<PublicEndpoint> {
  const probe = createNetServer().listen(0, "127.0.0.1");
  await once(probe, "listening");
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return { advertise: "127.0.0.1", apiPort: port };
}

/** A member's public API (or an impostor) on 127.0.0.1, and where node-3's state lists it. */
async function httpsServer(
  identity: ClusterIdentity,
  fetch: (request: Request) => Response | Promise<Response>,
) {
  const server = await serveHttps(identity, fetch);
  return { ...server, endpoint: { advertise: "127.0.0.1", apiPort: server.port } };
}

describe("removedPerMembers: asking the members over an unauthenticated connection", () => {
  test("a member's genuine answer is proof, whatever TLS identity it serves; no token goes out", async () => {
    const node = members();
    // The member serves a TLS identity the asker never saw: a rotation replaced it meanwhile.
    const server = await httpsServer(createNodeIdentity(), createPublicApi(node.deps).fetch);
    try {
      const lines: string[] = [];
      const state = askerState(server.endpoint, [], await closedEndpoint());
      const removed = await removedPerMembers(state, ASKER, CLUSTER, 2_000, (l) => lines.push(l));
      assert.equal(removed, true, lines.join("\n"));
      assert.deepEqual(server.authorizations, [undefined]);
    } finally {
      await server.close();
    }
  });

  test("an impostor's endless answer is cut off at 16 KiB, not read into memory", async () => {
    let sent = 0;
    const chunk = new Uint8Array(64 * 1024).fill(0x20);
    const server = await httpsServer(createNodeIdentity(), () => {
      // 64 MiB of JSON whitespace, for as long as the asker keeps reading.
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent >= 64 << 20) return controller.close();
          sent += chunk.byteLength;
          controller.enqueue(chunk);
        },
      });
      return new Response(body, { headers: { "content-type": "application/json" } });
    });
    try {
      const lines: string[] = [];
      const state = askerState(server.endpoint, [], await closedEndpoint());
      const removed = await removedPerMembers(state, ASKER, CLUSTER, 5_000, (l) => lines.push(l));
      assert.equal(removed, false);
      assert.match(
        lines.join("\n"),
        /no proof from node-1: .*the reply is longer than 16384 bytes/,
      );
      assert.ok(sent < 64 << 20, `the impostor got to send ${sent} bytes of its 64 MiB`);
    } finally {
      await server.close();
    }
  });

  test("an impostor at a member's address is asked and never believed", async () => {
    const impostor = createNodeIdentity();
    const recorded = forge({ nonce: freshNonce() });
    const lies: ((nonce: string) => unknown)[] = [
      (nonce) => ({ ...forge({ nonce }), signature: undefined }),
      (nonce) => forge({ nonce, key: impostor }),
      (nonce) => forge({ nonce, key: impostor, signer: 9 }),
      () => recorded,
      (nonce) => ({ ...recorded, nonce }),
    ];
    let asked = 0;
    const server = await httpsServer(IDENTITY, async (request) => {
      const { nonce } = (await request.json()) as { nonce: string };
      return Response.json(lies[asked++ % lies.length]!(nonce));
    });
    try {
      const state = askerState(server.endpoint, [], await closedEndpoint());
      const lines: string[] = [];
      for (const _ of lies) {
        assert.equal(
          await removedPerMembers(state, ASKER, CLUSTER, 2_000, (l) => lines.push(l)),
          false,
        );
      }
      assert.equal(asked, lies.length, "the impostor was asked each time");
      assert.deepEqual(
        server.authorizations,
        lies.map(() => undefined),
      );
      assert.match(lines.join("\n"), /no proof from node-1: it is not signed by node 1's key/);
      assert.match(lines.join("\n"), /no proof from node-1: it is for another nonce/);
      // Nothing listens at node-2's address: unreachable counts as no proof, not as removal.
      assert.match(lines.join("\n"), /no proof from node-2/);
    } finally {
      await server.close();
    }
  });
});
