/**
 * Bad input against a running node (the real executable, `--mesh none`): every endpoint with
 * broken credentials, malformed and hostile bodies, invalid join fields, unknown routes, and a
 * seeded fast-check fuzzer over the join and allocation-status payloads. Each must be a 4xx with a
 * one-line error (naming the field where there is one), the node must keep serving, and its
 * committed state must be byte-for-byte unchanged (GET /v1/debug/state before and after).
 *
 * Requests with wrong credentials come from a new loopback source each time, so the per-source
 * back-off (tested in security.test.ts) does not turn their 401s into 429s.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import type { DebugStateResponse } from "../../lib/api/wire.ts";
import { MAX_BODY_BYTES, MEMBER_HEADER } from "../../lib/api/wire.ts";
import { validateJoinRequest } from "../../lib/cluster/validate.ts";
import { createNodeIdentity } from "../../lib/identity/node-key.ts";
import { createSecret, formatToken, hashSecret } from "../../lib/identity/token.ts";
import { generateKeyPair, keyToBase64, publicKeyFromPrivate } from "../../lib/mesh/keys.ts";
import { formatProtocol, PROTOCOL_HEADER, PROTOCOL_VERSION } from "../../lib/shared/protocol.ts";
import { parseWorkloadCommand } from "../../lib/workloads/commands.ts";
import { signJoin } from "../unit/cluster/fixtures.ts";
import { LocalCluster } from "./harness.ts";
import { debugState, type RawRequest, rawRequest, secretOf } from "./raw-client.ts";

const FUZZ_RUNS = 200;
const FUZZ_SEED = 20_260_601;

type Probe = Omit<RawRequest, "host" | "from">;

interface Expectation {
  /** Allowed statuses; any 4xx but 429 when omitted. */
  readonly status?: number | readonly number[];
  readonly field?: string;
  /** Send from a fresh source address (for requests that fail authentication). */
  readonly fresh?: boolean;
}

/** A little-endian 32-byte u-coordinate as a base64 WireGuard key. */
function uKey(u: bigint): string {
  const bytes = new Uint8Array(32);
  for (let i = 0; i < 32; i++) bytes[i] = Number((u >> BigInt(8 * i)) & 0xffn);
  return keyToBase64(bytes);
}
const P = 2n ** 255n - 19n;

describe("bad input against a running node", () => {
  const cluster = new LocalCluster();
  let host = "";
  let secret = "";
  let token = "";
  let memberSecret = "";
  let nodeIdentity = { certPem: "", keyPem: "" };
  let ownKey = "";
  let initial: DebugStateResponse;
  let tried = 0;
  let sources = 0;
  const trusted = () => cluster.address(5);
  const freshSource = () => cluster.address(10 + (sources++ % 240));
  const auth = () => ({ authorization: `Bearer ${secret}` });
  /** A member's headers, as this build sends them (its protocol too). */
  const member = () => ({
    [MEMBER_HEADER]: "1",
    authorization: `Bearer ${memberSecret}`,
    [PROTOCOL_HEADER]: formatProtocol(PROTOCOL_VERSION),
  });
  const json = { "content-type": "application/json" };

  function joinBody(overrides: Record<string, unknown> = {}): Record<string, unknown> {
    return signJoin(
      {
        // Each attempt its own id: the leader binds an id to its first registration.
        requestId: `bad-input-${randomBytes(9).toString("base64url")}`,
        name: "node-7",
        advertise: cluster.address(7),
        apiPort: 4400,
        raftPort: 4401,
        wgPort: 4400,
        wgPublicKey: generateKeyPair().publicKey,
        resources: { cores: 2, memoryBytes: 2 * 1024 ** 3 },
        memberSecretHash: hashSecret(createSecret()),
        mesh: "none",
        ...overrides,
      },
      createNodeIdentity(),
    );
  }

  async function refused(what: string, probe: Probe, expect: Expectation = {}): Promise<void> {
    tried++;
    // Every probe shows node 1's key, so the internal routes judge the rest of the request: a
    // key alone authorises nothing, and the credential variants above must still be refused.
    const reply = await rawRequest({
      host,
      from: expect.fresh ? freshSource() : trusted(),
      clientIdentity: nodeIdentity,
      ...probe,
    });
    const allowed = expect.status === undefined ? undefined : [expect.status].flat();
    assert.ok(
      reply.status >= 400 && reply.status < 500 && reply.status !== 429,
      `${what}: HTTP ${reply.status} ${reply.text.slice(0, 200)}`,
    );
    if (allowed) assert.ok(allowed.includes(reply.status), `${what}: HTTP ${reply.status}`);
    // Node's HTTP parser answers 431 itself, before any handler, with an empty body.
    if (reply.status === 431) return;
    const body = JSON.parse(reply.text) as { error?: unknown; field?: unknown };
    assert.equal(typeof body.error, "string", `${what}: ${reply.text}`);
    assert.doesNotMatch(body.error as string, /[\r\n]/, `${what}: one line`);
    if (expect.field !== undefined) assert.equal(body.field, expect.field, `${what}: field`);
  }

  before(async () => {
    token = await cluster.init();
    secret = secretOf(token);
    host = cluster.address(1);
    memberSecret = readFileSync(join(cluster.dataDir(1), "member.secret"), "utf8").trim();
    nodeIdentity = {
      certPem: readFileSync(join(cluster.dataDir(1), "node.crt"), "utf8"),
      keyPem: readFileSync(join(cluster.dataDir(1), "node.key"), "utf8"),
    };
    ownKey = publicKeyFromPrivate(readFileSync(join(cluster.dataDir(1), "wg.key"), "utf8").trim());
    initial = await debugState(host, secret, trusted());
  });
  after(async () => {
    await cluster.cleanup();
  });

  const PUBLIC: [string, string][] = [
    ["POST", "/v1/join"],
    ["POST", "/v1/join/confirm"],
    ["GET", "/v1/status"],
    ["GET", "/v1/nodes"],
    ["POST", "/v1/token/rotate"],
    ["GET", "/v1/debug/state"],
    ["POST", "/v1/workloads"],
    ["GET", "/v1/workloads/web"],
    ["DELETE", "/v1/workloads/web"],
    ["GET", "/v1/allocations"],
    ["GET", "/v1/allocations/1/log"],
  ];
  const INTERNAL: [string, string][] = [
    ["POST", "/v1/internal/heartbeat"],
    ["GET", "/v1/internal/peers"],
    ["POST", "/v1/internal/allocation-status"],
    ["POST", "/v1/internal/token"],
    ["GET", "/v1/internal/allocations/1/log"],
  ];

  test("every endpoint refuses missing, wrong, truncated and over-long credentials with 401", async () => {
    const wrong = secret.replace(/^./, secret[0] === "a" ? "b" : "a");
    const publicVariants: [string, Record<string, string>][] = [
      ["no Authorization header", {}],
      ["an empty bearer", { authorization: "Bearer " }],
      ["a wrong secret", { authorization: `Bearer ${wrong}` }],
      ["a truncated secret", { authorization: `Bearer ${secret.slice(0, 16)}` }],
      ["an over-long secret", { authorization: `Bearer ${secret}${"a".repeat(8000)}` }],
      [
        "a whole token whose fingerprint names another cluster",
        // a random base32 string of a fingerprint's length stands for another cluster's certificate
        { authorization: `Bearer ${formatToken({ secret, fingerprint: createSecret() })}` },
      ],
      [
        "another scheme",
        { authorization: `Basic ${Buffer.from(`x:${secret}`).toString("base64")}` },
      ],
      ["the secret and more words", { authorization: `Bearer ${secret} extra` }],
      ["a member secret", { authorization: `Bearer ${memberSecret}` }],
      [
        "a tab inside the secret",
        { authorization: `Bearer ${secret.slice(0, 8)}\t${secret.slice(8)}` },
      ],
    ];
    for (const [method, path] of PUBLIC) {
      for (const [what, headers] of publicVariants) {
        await refused(
          `${method} ${path} with ${what}`,
          { method, path, headers },
          {
            status: 401,
            fresh: true,
          },
        );
      }
    }
    const internalVariants: [string, Record<string, string>][] = [
      ["no credentials", {}],
      ["no member id", { authorization: `Bearer ${memberSecret}` }],
      ["a wrong member secret", { [MEMBER_HEADER]: "1", authorization: `Bearer ${wrong}` }],
      ["the cluster token", { [MEMBER_HEADER]: "1", authorization: `Bearer ${secret}` }],
      ["an unknown member", { [MEMBER_HEADER]: "99", authorization: `Bearer ${memberSecret}` }],
      ["a non-numeric member", { [MEMBER_HEADER]: "1x", authorization: `Bearer ${memberSecret}` }],
      [
        "a truncated member secret",
        { [MEMBER_HEADER]: "1", authorization: `Bearer ${memberSecret.slice(0, 10)}` },
      ],
      [
        "an over-long member secret",
        { [MEMBER_HEADER]: "1", authorization: `Bearer ${memberSecret}${"b".repeat(8000)}` },
      ],
    ];
    for (const [method, path] of INTERNAL) {
      for (const [what, headers] of internalVariants) {
        await refused(
          `${method} ${path} with ${what}`,
          { method, path, headers },
          {
            status: 401,
            fresh: true,
          },
        );
      }
    }
    await refused(
      "a request head over 16 KiB",
      { path: "/v1/status", headers: { ...auth(), "x-filler": "f".repeat(20_000) } },
      { status: 431 },
    );
  });

  test("malformed, mistyped, oversized and deeply nested bodies are refused on every POST route", async () => {
    const routes: [string, Record<string, string>][] = [
      ["/v1/join", auth()],
      ["/v1/join/confirm", auth()],
      ["/v1/workloads", auth()],
      ["/v1/internal/allocation-status", member()],
      ["/v1/internal/token", member()],
    ];
    const bodies: [string, string | Uint8Array, Record<string, string>, Expectation][] = [
      ["an empty body", "", json, { status: 400, field: "body" }],
      ["truncated JSON", '{"name":"node-7",', json, { status: 400, field: "body" }],
      ["a bare word", "nul", json, { status: 400, field: "body" }],
      [
        "invalid UTF-8",
        new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
        json,
        { status: 400 },
      ],
      ["null", "null", json, { status: 400 }],
      ["an array", "[]", json, { status: 400 }],
      ["a number", "42", json, { status: 400 }],
      ["a string", '"node-7"', json, { status: 400 }],
      [
        "17 levels of nesting",
        `{"a":${"[".repeat(16)}${"]".repeat(16)}}`,
        json,
        { status: 400, field: "body" },
      ],
      [
        "30000 levels of nesting",
        `${"[".repeat(30_000)}${"]".repeat(30_000)}`,
        json,
        { status: 400, field: "body" },
      ],
      ["a huge array", `{"name":[${new Array(30_000).fill(0).join(",")}]}`, json, { status: 400 }],
      ["a body over 64 KiB", `{"name":"${"x".repeat(MAX_BODY_BYTES)}"}`, json, { status: 413 }],
      ["text/plain", JSON.stringify(joinBody()), { "content-type": "text/plain" }, { status: 415 }],
      [
        "a form",
        "name=node-7",
        { "content-type": "application/x-www-form-urlencoded" },
        { status: 415 },
      ],
      [
        "CBOR",
        new Uint8Array([0xa1, 0x64, 0x6e, 0x61, 0x6d, 0x65, 0x61, 0x78]),
        { "content-type": "application/cbor" },
        { status: 415 },
      ],
    ];
    for (const [path, headers] of routes) {
      for (const [what, body, type, expect] of bodies) {
        await refused(
          `POST ${path} with ${what}`,
          {
            method: "POST",
            path,
            headers: { ...headers, ...type },
            body,
          },
          expect,
        );
      }
    }
  });

  test("invalid join fields are 400 naming the field; taken names and keys are 409", async () => {
    const cases: [string, Record<string, unknown>, number, string][] = [
      ["no name", { name: undefined }, 400, "name"],
      ["a numeric name", { name: 7 }, 400, "name"],
      ["an empty name", { name: "" }, 400, "name"],
      ["an upper-case name", { name: "NODE-7" }, 400, "name"],
      ["a name with a NUL", { name: "node\u00007" }, 400, "name"],
      ["a name with a newline", { name: "node\n7" }, 400, "name"],
      ["a name with an escape sequence", { name: "\u001b[31mnode" }, 400, "name"],
      ["a non-ASCII name", { name: "nöde-7" }, 400, "name"],
      ["an emoji name", { name: "😀" }, 400, "name"],
      ["a right-to-left override", { name: "node\u202e7" }, 400, "name"],
      ["a 64-character name", { name: "a".repeat(64) }, 400, "name"],
      ["a leading hyphen", { name: "-node" }, 400, "name"],
      ["a name as an array", { name: ["node-7"] }, 400, "name"],
      ["the unspecified address", { advertise: "0.0.0.0" }, 400, "advertise"],
      ["the IPv6 unspecified address", { advertise: "::" }, 400, "advertise"],
      ["IPv4-mapped unspecified", { advertise: "::ffff:0.0.0.0" }, 400, "advertise"],
      ["a zone index", { advertise: "fe80::1%eth0" }, 400, "advertise"],
      ["a bracketed IPv6", { advertise: "[2001:db8::1]" }, 400, "advertise"],
      ["an IPv6 with a port", { advertise: "[2001:db8::1]:4400" }, 400, "advertise"],
      ["an IPv4 with a port", { advertise: "10.0.0.7:4400" }, 400, "advertise"],
      ["an octet over 255", { advertise: "10.0.0.256" }, 400, "advertise"],
      ["three octets", { advertise: "10.0.7" }, 400, "advertise"],
      ["a host name", { advertise: "localhost" }, 400, "advertise"],
      ["a numeric address", { advertise: 167772167 }, 400, "advertise"],
      ["port 0", { apiPort: 0 }, 400, "apiPort"],
      ["port 65536", { raftPort: 65536 }, 400, "raftPort"],
      ["a fractional port", { wgPort: 4400.5 }, 400, "wgPort"],
      ["a port as text", { apiPort: "4400" }, 400, "apiPort"],
      [
        "a key one byte short",
        { wgPublicKey: keyToBase64(new Uint8Array(31).fill(9)) },
        400,
        "wgPublicKey",
      ],
      [
        "a key one byte long",
        { wgPublicKey: keyToBase64(new Uint8Array(33).fill(9)) },
        400,
        "wgPublicKey",
      ],
      ["a hex key", { wgPublicKey: "ab".repeat(32) }, 400, "wgPublicKey"],
      ["a key that is not base64", { wgPublicKey: `${"!".repeat(43)}=` }, 400, "wgPublicKey"],
      ["the all-zero key", { wgPublicKey: uKey(0n) }, 400, "wgPublicKey"],
      ["the low-order point u=1", { wgPublicKey: uKey(1n) }, 400, "wgPublicKey"],
      ["the low-order point u=p-1", { wgPublicKey: uKey(P - 1n) }, 400, "wgPublicKey"],
      ["a non-canonical zero, u=p", { wgPublicKey: uKey(P) }, 400, "wgPublicKey"],
      [
        "an order-8 point",
        {
          wgPublicKey:
            uKey(39382357235489614581723060781553021112529911719440698176882885853963445705823n),
        },
        400,
        "wgPublicKey",
      ],
      ["a key as a number", { wgPublicKey: 42 }, 400, "wgPublicKey"],
      ["zero cores", { resources: { cores: 0, memoryBytes: 1024 } }, 400, "resources.cores"],
      [
        "negative memory",
        { resources: { cores: 1, memoryBytes: -1 } },
        400,
        "resources.memoryBytes",
      ],
      [
        "memory as text",
        { resources: { cores: 1, memoryBytes: "8G" } },
        400,
        "resources.memoryBytes",
      ],
      ["resources as an array", { resources: [1, 2] }, 400, "resources"],
      ["an upper-case secret hash", { memberSecretHash: "A".repeat(64) }, 400, "memberSecretHash"],
      ["a short secret hash", { memberSecretHash: "a".repeat(63) }, 400, "memberSecretHash"],
      ["a short request id", { requestId: "abc" }, 400, "requestId"],
      ["a request id with spaces", { requestId: "bad input 0001" }, 400, "requestId"],
      ["an unknown mesh mode", { mesh: "ipsec" }, 400, "mesh"],
      ["the other mesh mode", { mesh: "wireguard" }, 409, "mesh"],
      ["a protocol version as text", { protocol: "1.0" }, 400, "protocol"],
      ["a negative protocol minor", { protocol: { major: 1, minor: -1 } }, 400, "protocol.minor"],
      [
        "another major protocol version",
        { protocol: { major: PROTOCOL_VERSION.major + 1, minor: 0 } },
        409,
        "protocol",
      ],
      ["a name that is taken with another key", { name: "node-1" }, 409, "name"],
      ["the node's own key under a new name", { wgPublicKey: ownKey }, 409, "wgPublicKey"],
    ];
    for (const [what, overrides, status, field] of cases) {
      await refused(
        `join with ${what}`,
        {
          method: "POST",
          path: "/v1/join",
          headers: { ...auth(), ...json },
          body: JSON.stringify(joinBody(overrides)),
        },
        { status, field },
      );
    }
    const confirms: [string, Record<string, unknown>, number, string][] = [
      ["an unknown node", { nodeId: 99 }, 409, "nodeId"],
      ["a node id as text", { nodeId: "1" }, 400, "nodeId"],
      ["a negative node id", { nodeId: -1 }, 400, "nodeId"],
      ["another key than registered", { nodeId: 1 }, 409, "wgPublicKey"],
      ["a bad key", { nodeId: 1, wgPublicKey: uKey(1n) }, 400, "wgPublicKey"],
    ];
    for (const [what, overrides, status, field] of confirms) {
      await refused(
        `join confirm with ${what}`,
        {
          method: "POST",
          path: "/v1/join/confirm",
          headers: { ...auth(), ...json },
          body: JSON.stringify({
            requestId: "bad-input-0002",
            wgPublicKey: generateKeyPair().publicKey,
            ...overrides,
          }),
        },
        { status, field },
      );
    }
  });

  test("unknown routes and methods are 404 without detail", async () => {
    const probes: [string, string][] = [
      ["GET", "/"],
      ["GET", "/v1"],
      ["GET", "/v1/nope"],
      ["GET", "/v1/status/extra"],
      ["POST", "/v1/status"],
      ["PUT", "/v1/join"],
      ["DELETE", "/v1/nodes"],
      ["GET", "/v1/internal/nope"],
      ["GET", "/../../etc/passwd"],
      ["GET", "/v1/%00"],
    ];
    for (const [method, path] of probes) {
      for (const headers of [{}, auth()]) {
        tried++;
        const reply = await rawRequest({ host, method, path, headers, from: freshSource() });
        assert.equal(reply.status, 404, `${method} ${path}`);
        assert.equal(reply.text, '{"error":"not found"}', `${method} ${path}`);
      }
    }
  });

  test(`fuzzing join bodies (${FUZZ_RUNS} runs, seed ${FUZZ_SEED}) gets only 4xx`, async () => {
    const field = fc.constantFrom(
      "requestId",
      "name",
      "advertise",
      "apiPort",
      "raftPort",
      "wgPort",
      "wgPublicKey",
      "resources",
      "memberSecretHash",
      "mesh",
      "protocol",
    );
    const mutation = fc.tuple(field, fc.oneof(fc.jsonValue(), fc.string({ unit: "binary" })));
    const body = fc.oneof(
      {
        weight: 3,
        arbitrary: fc
          .array(mutation, { minLength: 1, maxLength: 4 })
          .map((changes) => joinBody(Object.fromEntries(changes))),
      },
      { weight: 1, arbitrary: fc.jsonValue() },
    );
    // Only bodies the node must refuse: a valid one would (rightly) register a node.
    const invalid = body.filter((value) => !validateJoinRequest(value, true).ok);
    await fc
      .assert(
        fc.asyncProperty(invalid, async (value) => {
          await refused(`fuzzed join ${JSON.stringify(value).slice(0, 200)}`, {
            method: "POST",
            path: "/v1/join",
            headers: { ...auth(), ...json },
            body: JSON.stringify(value),
          });
        }),
        { numRuns: FUZZ_RUNS, seed: FUZZ_SEED },
      )
      .catch((error: Error) => {
        throw new Error(`join fuzzer failed with seed ${FUZZ_SEED}: ${error.message}`);
      });
  });

  test(`fuzzing allocation-status reports (${FUZZ_RUNS} runs, seed ${FUZZ_SEED}) gets only 4xx`, async () => {
    const report = fc.record(
      {
        id: fc.oneof(fc.jsonValue(), fc.integer()),
        status: fc.oneof(fc.jsonValue(), fc.constantFrom("running", "exited", "failed")),
        restarts: fc.oneof(fc.jsonValue(), fc.integer()),
      },
      { requiredKeys: [] },
    );
    const invalid = fc.oneof(report, fc.jsonValue()).filter((value) => {
      const fields = (value ?? {}) as Record<string, unknown>;
      return !parseWorkloadCommand({
        type: "AllocationStatus",
        id: fields.id,
        node: 1,
        status: fields.status,
        restarts: fields.restarts,
        at: 1,
      }).ok;
    });
    await fc
      .assert(
        fc.asyncProperty(invalid, async (value) => {
          await refused(
            `fuzzed report ${JSON.stringify(value).slice(0, 200)}`,
            {
              method: "POST",
              path: "/v1/internal/allocation-status",
              headers: { ...member(), ...json },
              body: JSON.stringify(value),
            },
            { status: 400 },
          );
        }),
        { numRuns: FUZZ_RUNS, seed: FUZZ_SEED },
      )
      .catch((error: Error) => {
        throw new Error(`report fuzzer failed with seed ${FUZZ_SEED}: ${error.message}`);
      });
  });

  test("the node still serves and its committed state is byte-for-byte unchanged", async () => {
    const status = await cluster.run(["status"], { env: { MILL_DATA_DIR: cluster.dataDir(1) } });
    assert.equal(status.status, 0, status.stderr);
    assert.match(status.stdout, /^CLUSTER: 1 node, all healthy/);
    assert.deepEqual(await debugState(host, secret, trusted()), initial);
    assert.ok(tried > 2 * FUZZ_RUNS, `only ${tried} bad inputs tried`);
    process.stdout.write(`bad inputs tried and refused: ${tried}\n`);
  });
});
