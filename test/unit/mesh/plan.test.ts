import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { generateKeyPair } from "../../../lib/mesh/keys.ts";
import {
  allocateAddress,
  desiredConfig,
  diffPeers,
  formatEndpoint,
  formatIPv4,
  interfaceAddress,
  type MeshNode,
  networkOf,
  outsideMesh,
  parseCidr,
  parseIPv4,
  peersFor,
} from "../../../lib/mesh/plan.ts";

let seed = 0;
const key = () => generateKeyPair(() => new Uint8Array(32).fill(++seed)).publicKey;

describe("plan: CIDR", () => {
  it("parses the default range", () => {
    assert.deepEqual(parseCidr("10.99.0.0/16"), { network: parseIPv4("10.99.0.0"), prefix: 16 });
  });

  it("rejects malformed ranges with a suggestion", () => {
    assert.throws(() => parseCidr("10.99.0.0"), /prefix from \/8 to \/30/);
    assert.throws(() => parseCidr("10.99.0.0/31"), /\/8 to \/30/);
    assert.throws(() => parseCidr("300.1.1.1/16"), /IPv4 network/);
    assert.throws(() => parseCidr("10.99.3.0/16"), /did you mean 10\.99\.0\.0\/16/);
  });

  it("round-trips IPv4 text", () => {
    fc.assert(
      fc.property(fc.ipV4(), (ip) => {
        assert.equal(formatIPv4(parseIPv4(ip)), ip);
      }),
      { seed: 7 },
    );
  });
});

describe("plan: connections through the mesh", () => {
  const mesh = networkOf("10.99.3.7/16");

  it("an interface address names its range", () => {
    assert.deepEqual(mesh, parseCidr("10.99.0.0/16"));
    assert.deepEqual(networkOf("172.16.5.9/24"), parseCidr("172.16.5.0/24"));
  });

  it("takes sources inside the range, IPv4-mapped ones too", () => {
    for (const inside of ["10.99.0.1", "10.99.255.254", "::ffff:10.99.0.2", "::FFFF:10.99.0.2"]) {
      assert.equal(outsideMesh(mesh, inside), undefined, inside);
    }
  });

  it("refuses any other source, naming the range", () => {
    for (const outside of ["192.168.57.4", "10.98.0.1", "127.0.0.1", "::1", "fe80::1", ""]) {
      assert.equal(
        outsideMesh(mesh, outside),
        "it did not come through the mesh (its address is outside 10.99.0.0/16)",
        outside,
      );
    }
  });
});

describe("plan: allocation", () => {
  const cidr = parseCidr("10.99.0.0/16");

  it("starts at the first host and continues after the highest in use", () => {
    assert.equal(allocateAddress(cidr, []), "10.99.0.1");
    assert.equal(allocateAddress(cidr, ["10.99.0.1", "10.99.0.7/16"]), "10.99.0.8");
    assert.equal(allocateAddress(cidr, ["10.99.0.255"]), "10.99.1.0");
  });

  it("ignores addresses outside the range", () => {
    assert.equal(allocateAddress(cidr, ["192.168.1.1"]), "10.99.0.1");
  });

  it("wraps to the lowest free address, skipping network and broadcast", () => {
    const small = parseCidr("10.0.0.0/29");
    assert.equal(allocateAddress(small, ["10.0.0.6"]), "10.0.0.1");
    assert.equal(allocateAddress(small, ["10.0.0.1", "10.0.0.2", "10.0.0.6"]), "10.0.0.3");
    const full = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"];
    assert.throws(() => allocateAddress(small, full), /is full \(6 addresses in use\)/);
  });

  it("never hands out an address in use, the network or the broadcast address", () => {
    const small = parseCidr("10.0.0.0/28");
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: 14 }), { maxLength: 13 }), (hosts) => {
        const inUse = hosts.map((host) => `10.0.0.${host}`);
        const chosen = allocateAddress(small, inUse);
        assert.ok(!inUse.includes(chosen));
        assert.notEqual(chosen, "10.0.0.0");
        assert.notEqual(chosen, "10.0.0.15");
      }),
      { seed: 11 },
    );
  });

  it("gives interface addresses the mesh prefix", () => {
    assert.equal(interfaceAddress(cidr, "10.99.0.8"), "10.99.0.8/16");
    assert.throws(() => interfaceAddress(cidr, "10.98.0.8"), /outside 10\.99\.0\.0\/16/);
  });
});

describe("plan: peers", () => {
  const nodes: MeshNode[] = [
    {
      id: "n1",
      publicKey: key(),
      meshAddress: "10.99.0.1",
      advertiseAddress: "192.168.5.1",
      wireguardPort: 51820,
    },
    {
      id: "n2",
      publicKey: key(),
      meshAddress: "10.99.0.2/16",
      advertiseAddress: "fd00::2",
      wireguardPort: 51821,
    },
    { id: "n3", meshAddress: "10.99.0.3", advertiseAddress: "192.168.5.3", wireguardPort: 51820 },
  ];

  it("peers with every other keyed node", () => {
    const peers = peersFor("n1", nodes);
    assert.deepEqual(peers, [
      { publicKey: nodes[1]!.publicKey, endpoint: "[fd00::2]:51821", allowedIps: ["10.99.0.2/32"] },
    ]);
    assert.equal(peersFor("n3", nodes).length, 2);
  });

  it("builds the device config", () => {
    const config = desiredConfig({ id: "n2", privateKey: "secret", listenPort: 51821 }, nodes);
    assert.equal(config.listenPort, 51821);
    assert.deepEqual(
      config.peers.map((peer) => peer.endpoint),
      ["192.168.5.1:51820"],
    );
  });

  it("rejects shared keys, shared addresses and host names", () => {
    const shared = {
      ...nodes[1]!,
      id: "n4",
      meshAddress: "10.99.0.4",
      publicKey: nodes[0]!.publicKey,
    };
    assert.throws(() => peersFor("n1", [...nodes, shared]), /nodes n1 and n4 share WireGuard key/);
    assert.throws(
      () => peersFor("n1", [...nodes, { ...nodes[2]!, id: "n5" }]),
      /n3 and n5 share mesh address/,
    );
    const named = { ...nodes[1]!, advertiseAddress: "node2.example" };
    assert.throws(() => peersFor("n1", [nodes[0]!, named]), /IP literals, not host names/);
    assert.throws(() => formatEndpoint("10.0.0.1", 0), /1-65535/);
  });

  it("diffs peer lists by key", () => {
    const [a, b, c] = [key(), key(), key()];
    const before = [
      { publicKey: a, endpoint: "10.0.0.1:1", allowedIps: ["10.99.0.1/32"] },
      { publicKey: b, endpoint: "10.0.0.2:1", allowedIps: ["10.99.0.2/32"] },
    ];
    const after = [
      { publicKey: b, endpoint: "10.0.0.9:1", allowedIps: ["10.99.0.2/32"] },
      { publicKey: c, endpoint: "10.0.0.3:1", allowedIps: ["10.99.0.3/32"] },
    ];
    assert.deepEqual(diffPeers(before, after), { added: [c], removed: [a], changed: [b] });
    assert.deepEqual(diffPeers(before, before), { added: [], removed: [], changed: [] });
  });
});
