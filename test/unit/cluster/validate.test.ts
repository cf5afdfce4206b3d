import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  isLoopback,
  type JoinRequest,
  validateJoinRequest,
} from "../../../lib/cluster/validate.ts";
import { joinBody as body, GiB } from "./fixtures.ts";

function problemOf(input: unknown, loopbackCluster = false) {
  const checked = validateJoinRequest(input, loopbackCluster);
  return checked.ok ? undefined : checked.problem;
}

describe("validateJoinRequest", () => {
  test("accepts a good body and copies only known fields", () => {
    const checked = validateJoinRequest(body({ extra: "dropped" }), false);
    assert.equal(checked.ok, true);
    const value = (checked as { value: JoinRequest }).value;
    assert.equal("extra" in value, false);
    assert.equal(value.name, "node-2");
    assert.deepEqual(value.resources, { cores: 2, memoryBytes: 4 * GiB });
  });

  test("a body that is not an object", () => {
    assert.deepEqual(problemOf([1]), { field: "body", error: "body must be a JSON object" });
    assert.equal(problemOf(null)?.field, "body");
  });

  const bad: [string, Record<string, unknown>, string, RegExp][] = [
    ["missing name", { name: undefined }, "name", /missing.*--name/],
    ["upper-case name", { name: "Node_2" }, "name", /not a DNS label.*e\.g\. node-2/],
    ["name of 64 characters", { name: "a".repeat(64) }, "name", /DNS label/],
    ["name ending in a hyphen", { name: "node-" }, "name", /DNS label/],
    ["host name as advertise", { advertise: "node2.example" }, "advertise", /not an IP address/],
    ["0.0.0.0", { advertise: "0.0.0.0" }, "advertise", /unspecified/],
    ["::", { advertise: "::" }, "advertise", /unspecified/],
    ["zone index", { advertise: "fe80::1%eth0" }, "advertise", /zone index/],
    ["loopback in a real cluster", { advertise: "127.0.0.2" }, "advertise", /loopback/],
    ["IPv6 loopback in a real cluster", { advertise: "::1" }, "advertise", /loopback/],
    ["port 0", { apiPort: 0 }, "apiPort", /1 to 65535/],
    ["port 65536", { raftPort: 65536 }, "raftPort", /1 to 65535/],
    ["fractional port", { wgPort: 80.5 }, "wgPort", /1 to 65535/],
    ["zero cores", { resources: { cores: 0, memoryBytes: GiB } }, "resources.cores", /from 1 to/],
    [
      "a million cores",
      { resources: { cores: 1_000_000, memoryBytes: GiB } },
      "resources.cores",
      /from 1 to 4096/,
    ],
    [
      "a petabyte of memory",
      { resources: { cores: 1, memoryBytes: 1024 ** 5 } },
      "resources.memoryBytes",
      /64 TiB/,
    ],
    [
      "fractional cores",
      { resources: { cores: 1.5, memoryBytes: GiB } },
      "resources.cores",
      /whole/,
    ],
    ["no memory", { resources: { cores: 1 } }, "resources.memoryBytes", /whole number of bytes/],
    ["no resources", { resources: undefined }, "resources", /JSON object/],
    ["short key", { wgPublicKey: "AAAA" }, "wgPublicKey", /44 base64/],
    [
      "all-zero key",
      { wgPublicKey: Buffer.alloc(32).toString("base64") },
      "wgPublicKey",
      /all zeros/,
    ],
    ["bad secret hash", { memberSecretHash: "xyz" }, "memberSecretHash", /sha256/],
    ["short request id", { requestId: "abc" }, "requestId", /8-64/],
    ["unknown mesh", { mesh: "tailscale" }, "mesh", /wireguard.*none/],
    ["no node key", { nodeKey: undefined }, "nodeKey", /nodeKey is missing.*register its own key/],
    ["a node key that is not a fingerprint", { nodeKey: "ABC" }, "nodeKey", /32 base32/],
  ];
  for (const [what, overrides, field, message] of bad) {
    test(`refuses ${what}, naming ${field}`, () => {
      const problem = problemOf(body(overrides));
      assert.equal(problem?.field, field);
      assert.match(problem!.error, message);
      assert.equal(problem!.error.includes("\n"), false);
    });
  }

  test("loopback is fine when the whole cluster is on loopback", () => {
    assert.equal(problemOf(body({ advertise: "127.0.0.2" }), true), undefined);
    assert.equal(problemOf(body({ advertise: "2001:db8::2" })), undefined);
  });
});

describe("isLoopback", () => {
  test("recognises IPv4, IPv6 and IPv4-mapped loopback", () => {
    assert.deepEqual(
      [
        "127.0.0.1",
        "127.5.5.5",
        "::1",
        "0:0:0:0:0:0:0:1",
        "::ffff:127.0.0.1",
        "10.0.0.1",
        "::2",
        "::ffff:10.0.0.1",
      ].map(isLoopback),
      [true, true, true, true, true, false, false, false],
    );
  });
});
