import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { test } from "node:test";
import { capConnectionsPerSource } from "../../../lib/platform/nodejs/index.ts";

/** A socket that records whether the cap destroyed it and can be closed by the client. */
class FakeSocket extends EventEmitter {
  destroyed = false;
  constructor(
    readonly remoteAddress: string,
    readonly remotePort = 40_000,
  ) {
    super();
  }
  destroy() {
    this.destroyed = true;
  }
}

function capped(cap: number) {
  const server = new EventEmitter();
  capConnectionsPerSource(server as never, cap);
  return (address: string, port?: number) => {
    const socket = new FakeSocket(address, port);
    server.emit("connection", socket as unknown as Socket);
    return socket;
  };
}

test("an IPv6 source counts per /64: new addresses in the same /64 do not get more connections", () => {
  const connect = capped(2);
  const own = [connect("2001:db8:1:2::1"), connect("2001:db8:1:2::ffff")];
  assert.deepEqual(
    own.map((socket) => socket.destroyed),
    [false, false],
  );
  assert.equal(connect("2001:db8:1:2:abcd::7").destroyed, true, "a third address in the /64");
  assert.equal(connect("2001:db8:1:3::1").destroyed, false, "the next /64 is another client");
  own[0]!.emit("close");
  assert.equal(connect("2001:db8:1:2::9").destroyed, false, "a closed connection frees a slot");
});

test("IPv4 sources count per address, IPv4-mapped IPv6 as the IPv4 address", () => {
  const connect = capped(1);
  assert.equal(connect("192.0.2.1").destroyed, false);
  assert.equal(connect("::ffff:192.0.2.1").destroyed, true);
  assert.equal(connect("192.0.2.2").destroyed, false);
});

test("privileged source ports have a cap of their own: a local user cannot use up the agent's", () => {
  const connect = capped(2);
  // A local user on 192.0.2.1 holds every unprivileged slot of its address...
  assert.equal(connect("192.0.2.1", 50_001).destroyed, false);
  assert.equal(connect("192.0.2.1", 50_002).destroyed, false);
  assert.equal(connect("192.0.2.1", 50_003).destroyed, true);
  // ...and the member's agent there, dialling from a reserved port, still gets in.
  const agent = [connect("192.0.2.1", 700), connect("192.0.2.1", 701)];
  assert.deepEqual(
    agent.map((socket) => socket.destroyed),
    [false, false],
  );
  // The privileged cap binds too, and closing one frees that cap only.
  assert.equal(connect("192.0.2.1", 702).destroyed, true);
  agent[0]!.emit("close");
  assert.equal(connect("192.0.2.1", 50_004).destroyed, true, "the unprivileged cap is still full");
  assert.equal(connect("192.0.2.1", 703).destroyed, false);
});
