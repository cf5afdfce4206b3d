import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { base64KeyToHex, generateKeyPair } from "../../../lib/mesh/keys.ts";
import {
  compareState,
  type DeviceConfig,
  parseDeviceState,
  parseReply,
  renderSetRequest,
} from "../../../lib/mesh/uapi.ts";

let seed = 100;
const pair = () => generateKeyPair(() => new Uint8Array(32).fill(++seed));
const self = pair();
const peerA = pair().publicKey;
const peerB = pair().publicKey;

const config: DeviceConfig = {
  privateKey: self.privateKey,
  listenPort: 51820,
  peers: [
    { publicKey: peerA, endpoint: "192.168.9.2:51820", allowedIps: ["10.99.0.2/32"] },
    { publicKey: peerB, endpoint: "[fd00::3]:51820", allowedIps: ["10.99.0.3/32", "10.98.0.0/24"] },
  ],
};

describe("uapi: rendering", () => {
  it("renders the complete desired state with hex keys", () => {
    assert.equal(
      renderSetRequest(config),
      [
        "set=1",
        `private_key=${base64KeyToHex(self.privateKey)}`,
        "listen_port=51820",
        "replace_peers=true",
        `public_key=${base64KeyToHex(peerA)}`,
        "replace_allowed_ips=true",
        "endpoint=192.168.9.2:51820",
        "persistent_keepalive_interval=25",
        "allowed_ip=10.99.0.2/32",
        `public_key=${base64KeyToHex(peerB)}`,
        "replace_allowed_ips=true",
        "endpoint=[fd00::3]:51820",
        "persistent_keepalive_interval=25",
        "allowed_ip=10.99.0.3/32",
        "allowed_ip=10.98.0.0/24",
        "",
        "",
      ].join("\n"),
    );
  });

  it("given the current state, updates peers in place and removes only departed ones", () => {
    const current = parseDeviceState([
      ["private_key", base64KeyToHex(self.privateKey)],
      ["listen_port", "51820"],
      ["public_key", base64KeyToHex(peerA)],
      ["allowed_ip", "10.99.0.2/32"],
      ["public_key", base64KeyToHex(peerB)],
      ["allowed_ip", "10.99.0.3/32"],
    ]);
    const peerC = pair().publicKey;
    const desired: DeviceConfig = {
      ...config,
      peers: [
        config.peers[0]!,
        { publicKey: peerC, endpoint: "192.168.9.4:51820", allowedIps: ["10.99.0.4/32"] },
      ],
    };
    assert.equal(
      renderSetRequest(desired, current),
      [
        "set=1",
        `public_key=${base64KeyToHex(peerB)}`,
        "remove=true",
        `public_key=${base64KeyToHex(peerA)}`,
        "replace_allowed_ips=true",
        "endpoint=192.168.9.2:51820",
        "persistent_keepalive_interval=25",
        "allowed_ip=10.99.0.2/32",
        `public_key=${base64KeyToHex(peerC)}`,
        "replace_allowed_ips=true",
        "endpoint=192.168.9.4:51820",
        "persistent_keepalive_interval=25",
        "allowed_ip=10.99.0.4/32",
        "",
        "",
      ].join("\n"),
    );
  });

  it("omits the endpoint of a peer without one", () => {
    const text = renderSetRequest({ ...config, peers: [{ publicKey: peerA, allowedIps: [] }] });
    assert.doesNotMatch(text, /endpoint=/);
  });

  it("rejects bad input before anything is sent", () => {
    const peer = config.peers[0]!;
    const bad = (change: Partial<typeof peer>) =>
      renderSetRequest({ ...config, peers: [{ ...peer, ...change }] });
    assert.throws(() => bad({ endpoint: "node2.example:51820" }), /host names are rejected/);
    assert.throws(() => bad({ endpoint: "fd00::3:51820" }), /\[IPv6\]:port/);
    assert.throws(() => bad({ endpoint: "10.0.0.1:70000" }), /IP:port/);
    assert.throws(() => bad({ allowedIps: ["10.99.0.2/33"] }), /invalid allowed IP/);
    assert.throws(() => bad({ allowedIps: ["10.99.0.2"] }), /invalid allowed IP/);
    assert.throws(() => bad({ publicKey: "nope" }), /invalid WireGuard public key/);
    assert.throws(() => renderSetRequest({ ...config, listenPort: 65536 }), /listen port/);
    assert.throws(
      () => renderSetRequest({ ...config, privateKey: "x" }),
      (error: Error) =>
        /private key/.test(error.message) && !error.message.includes(self.privateKey),
    );
  });
});

describe("uapi: replies", () => {
  it("waits for the blank line that ends a reply", () => {
    assert.equal(parseReply("errno=0\n"), undefined);
    assert.deepEqual(parseReply("errno=0\n\n"), { errno: 0, entries: [] });
    assert.deepEqual(parseReply("errno=-22\n\n"), { errno: -22, entries: [] });
  });

  it("rejects a reply without errno or with a malformed line", () => {
    assert.throws(() => parseReply("listen_port=1\n\n"), /no errno line/);
    assert.throws(() => parseReply("garbage\nerrno=0\n\n"), /malformed UAPI reply line/);
  });

  const getReply = [
    `private_key=${base64KeyToHex(self.privateKey)}`,
    "listen_port=51820",
    `public_key=${base64KeyToHex(peerA)}`,
    "endpoint=192.168.9.2:51820",
    "last_handshake_time_sec=1700000000",
    "last_handshake_time_nsec=250000000",
    "tx_bytes=1184",
    "rx_bytes=92",
    "persistent_keepalive_interval=25",
    "protocol_version=1",
    "allowed_ip=10.99.0.2/32",
    `public_key=${base64KeyToHex(peerB)}`,
    "endpoint=[fd00::3]:51820",
    "last_handshake_time_sec=0",
    "last_handshake_time_nsec=0",
    "tx_bytes=0",
    "rx_bytes=0",
    "persistent_keepalive_interval=25",
    "allowed_ip=10.99.0.3/32",
    "allowed_ip=10.98.0.0/24",
    "errno=0",
    "",
    "",
  ].join("\n");

  it("parses the device state of a get", () => {
    const state = parseDeviceState(parseReply(getReply)!.entries);
    assert.equal(state.privateKey, self.privateKey);
    assert.equal(state.listenPort, 51820);
    assert.deepEqual(state.peers[0], {
      publicKey: peerA,
      endpoint: "192.168.9.2:51820",
      allowedIps: ["10.99.0.2/32"],
      lastHandshakeMs: 1_700_000_000_250,
      persistentKeepalive: 25,
      rxBytes: 92,
      txBytes: 1184,
    });
    assert.equal(state.peers[1]!.lastHandshakeMs, 0);
    assert.deepEqual(state.peers[1]!.allowedIps, ["10.99.0.3/32", "10.98.0.0/24"]);
    assert.deepEqual(compareState(config, state), []);
  });

  it("reports every difference between desired and actual", () => {
    const state = parseDeviceState(parseReply(getReply)!.entries);
    const extra = pair().publicKey;
    const problems = compareState(
      {
        privateKey: pair().privateKey,
        listenPort: 51999,
        peers: [
          { publicKey: peerA, endpoint: "192.168.9.7:51820", allowedIps: ["10.99.0.9/32"] },
          { publicKey: extra, allowedIps: [] },
        ],
      },
      state,
    );
    assert.deepEqual(problems, [
      "the private key differs",
      "listen port is 51820, expected 51999",
      `peer ${peerA} endpoint is 192.168.9.2:51820, expected 192.168.9.7:51820`,
      `peer ${peerA} allowed IPs are [10.99.0.2/32], expected [10.99.0.9/32]`,
      `peer ${extra} is missing`,
      `unexpected peer ${peerB}`,
    ]);
  });

  it("accepts any port when the desired one is 0", () => {
    const state = parseDeviceState(parseReply(getReply)!.entries);
    assert.deepEqual(compareState({ ...config, listenPort: 0 }, state), []);
  });
});
