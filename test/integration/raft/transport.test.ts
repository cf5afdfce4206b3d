import assert from "node:assert/strict";
import { once } from "node:events";
import { type AddressInfo, connect, type Socket } from "node:net";
import { describe, test } from "node:test";
import { connect as connectTls, createServer as createTlsServer, type TLSSocket } from "node:tls";
import { outsideMesh, parseCidr } from "../../../lib/mesh/plan.ts";
import { encodeFrame, encodeHello } from "../../../lib/raft/transport/frames.ts";
import {
  startTransport,
  type Transport,
  type TransportOptions,
} from "../../../lib/raft/transport/transport.ts";
import type { Message, NodeId } from "../../../lib/raft/types.ts";
import { pollUntil } from "../../../lib/shared/poll.ts";
import { formatProtocol, PROTOCOL_VERSION } from "../../../lib/shared/protocol.ts";
import { FakeClock } from "../../shared/fake-clock.ts";
import { heldOpen, untilAccepted } from "../../shared/tcp-table.ts";
import { memberCertificates, transportTls } from "./member-tls.ts";

const HOST = "127.0.0.1";
/** Nodes 1-3 are members; node 9's certificate is not (the cluster never registered it). */
const certs = memberCertificates([1, 2, 3]);
const stranger = memberCertificates([9]).get(9)!;

/** A transport on a random port whose received messages can be awaited one by one. */
async function node(
  id: NodeId,
  ports: Map<NodeId, number>,
  port = 0,
  stallMs?: number,
  extra: Partial<TransportOptions> = {},
) {
  const inbox: Message[] = [];
  const waiters: (() => void)[] = [];
  const warnings: string[] = [];
  const transport = await startTransport({
    id,
    host: HOST,
    port,
    resolve: (peer) => (ports.has(peer) ? `${HOST}:${ports.get(peer)}` : undefined),
    onMessage: (message) => {
      inbox.push(message);
      for (const wake of waiters.splice(0)) wake();
    },
    tls: transportTls(certs, id),
    protocol: PROTOCOL_VERSION,
    maxFrameBytes: 4096,
    minBackoffMs: 10,
    ...(stallMs === undefined ? {} : { stallMs }),
    warn: (m) => warnings.push(m),
    ...extra,
  });
  ports.set(id, transport.port);
  const next = async (): Promise<Message> => {
    while (inbox.length === 0) await new Promise<void>((wake) => waiters.push(wake));
    return inbox.shift()!;
  };
  return { transport, inbox, next, warnings };
}

const heartbeat = (from: NodeId, to: NodeId, ctx: number): Message => ({
  type: "heartbeat",
  from,
  to,
  term: 1,
  commit: 0,
  ctx,
});

/**
 * Points `id`'s address at a black hole: it completes the handshake with `id`'s key and never
 * reads, like a peer behind a cut link whose connection survived; once it has one, the real
 * address is back.
 */
async function blackHoleFirst(ports: Map<NodeId, number>, id: NodeId) {
  const realPort = ports.get(id)!;
  const held: Socket[] = [];
  const own = certs.get(id)!;
  const hole = createTlsServer({ cert: own.certPem, key: own.keyPem }, (socket) => {
    socket.pause();
    held.push(socket);
    ports.set(id, realPort);
  });
  await new Promise<void>((resolve) => hole.listen(0, HOST, resolve));
  const address = hole.address();
  ports.set(id, typeof address === "object" && address ? address.port : 0);
  const close = async () => {
    for (const socket of held) socket.destroy();
    await new Promise<void>((resolve) => hole.close(() => resolve()));
  };
  return { held, close };
}

/**
 * A TLS connection to `port` showing `cert` (none when undefined), once its handshake is done,
 * having sent this node's hello as a member would (unless `hello` is false).
 */
async function dialAs(
  port: number,
  cert: { certPem: string; keyPem: string } | undefined,
  hello = true,
) {
  const socket = connectTls({
    host: HOST,
    port,
    rejectUnauthorized: false,
    ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}),
  });
  socket.on("error", () => {});
  // Read (and drop) the node's acknowledgements, or the socket would never see its end.
  socket.resume();
  await once(socket, "secureConnect");
  if (hello) socket.write(encodeHello(PROTOCOL_VERSION));
  return socket;
}

/** Resolves once `socket` closes. */
const closed = (socket: Socket | TLSSocket) =>
  new Promise<void>((resolve) => {
    if (socket.destroyed) resolve();
    else socket.once("close", () => resolve());
  });

async function closeAll(...transports: Transport[]) {
  await Promise.all(transports.map((t) => t.close()));
}

describe("raft transport", () => {
  test("messages round-trip in order, both ways", async () => {
    const ports = new Map<NodeId, number>();
    const a = await node(1, ports);
    const b = await node(2, ports);
    a.transport.send([heartbeat(1, 2, 1), heartbeat(1, 2, 2), heartbeat(1, 2, 3)]);
    for (const ctx of [1, 2, 3]) assert.deepEqual(await b.next(), heartbeat(1, 2, ctx));
    b.transport.send([{ type: "heartbeatResp", from: 2, to: 1, term: 1, ctx: 3 }]);
    assert.deepEqual(await a.next(), { type: "heartbeatResp", from: 2, to: 1, term: 1, ctx: 3 });
    await closeAll(a.transport, b.transport);
  });

  test("an oversized or malformed frame from a member closes only its connection, naming it", async () => {
    const ports = new Map<NodeId, number>();
    const a = await node(1, ports);
    const b = await node(2, ports);
    a.transport.send([heartbeat(1, 2, 1)]);
    assert.equal((await b.next()).type, "heartbeat");

    for (const bad of [
      new Uint8Array([0, 1, 0, 0, 9, 9]),
      new Uint8Array([0, 0, 0, 2, 0xff, 0xff, 0, 0, 0, 2]),
      encodeFrame(heartbeat(1, 7, 1)),
    ]) {
      const attacker = await dialAs(ports.get(2)!, certs.get(1));
      attacker.write(bad);
      await closed(attacker);
    }
    assert.equal(b.warnings.length, 3);
    assert.match(
      b.warnings[0]!,
      /from node 1 \(127\.0\.0\.1:\d+\): frame of 65536 bytes exceeds the limit of 4096/,
    );
    assert.match(b.warnings[1]!, /not CBOR/);
    assert.match(b.warnings[2]!, /message for node 7 reached node 2/);
    assert.equal(b.inbox.length, 0);

    a.transport.send([heartbeat(1, 2, 2)]);
    assert.deepEqual(await b.next(), heartbeat(1, 2, 2));
    await closeAll(a.transport, b.transport);
  });

  test("a forged frame in clear TCP never gets past the handshake", async () => {
    const ports = new Map<NodeId, number>();
    const b = await node(2, ports);
    const attacker = connect({ port: ports.get(2)!, host: HOST, localAddress: "127.0.0.7" });
    attacker.on("error", () => {});
    await once(attacker, "connect");
    attacker.write(encodeFrame({ ...heartbeat(1, 2, 1), term: 1_000_000 }));
    await closed(attacker);
    assert.equal(b.inbox.length, 0);
    assert.equal(b.warnings.length, 1);
    assert.match(b.warnings[0]!, /refusing a connection from 127\.0\.0\.7: TLS handshake failed/);
    await closeAll(b.transport);
  });

  test("a certificate that is not a member's key, or none, is refused before a byte is read", async () => {
    const ports = new Map<NodeId, number>();
    const b = await node(2, ports);
    for (const cert of [stranger, undefined]) {
      const attacker = await dialAs(ports.get(2)!, cert);
      attacker.write(encodeFrame({ ...heartbeat(9, 2, 1), term: 1_000_000 }));
      await closed(attacker);
    }
    assert.equal(b.inbox.length, 0);
    assert.equal(b.warnings.length, 2);
    assert.match(
      b.warnings[0]!,
      /127\.0\.0\.1:\d+: its certificate is not the key of a current member/,
    );
    assert.match(b.warnings[1]!, /127\.0\.0\.1:\d+: it presented no certificate/);
    await closeAll(b.transport);
  });

  test("a member's connection cannot speak for another member", async () => {
    const ports = new Map<NodeId, number>();
    const b = await node(2, ports);
    const member = await dialAs(ports.get(2)!, certs.get(1));
    member.write(encodeFrame({ ...heartbeat(3, 2, 1), term: 1_000_000 }));
    await closed(member);
    assert.equal(b.inbox.length, 0);
    assert.match(
      b.warnings[0]!,
      /closing the connection from node 1 \(127\.0\.0\.1:\d+\): dropped a heartbeat message claiming to come from node 3/,
    );
    await closeAll(b.transport);
  });

  test("a node that stops being a member loses its connection with its next frame", async () => {
    const ports = new Map<NodeId, number>();
    const members = new Map(certs);
    const b = await node(2, ports, 0, undefined, { tls: transportTls(members, 2) });
    const member = await dialAs(ports.get(2)!, certs.get(3));
    member.write(encodeFrame(heartbeat(3, 2, 1)));
    assert.deepEqual(await b.next(), heartbeat(3, 2, 1));
    members.delete(3);
    member.write(encodeFrame(heartbeat(3, 2, 2)));
    await closed(member);
    assert.equal(b.inbox.length, 0);
    assert.match(b.warnings[0]!, /node 3 is no longer a member/);
    await closeAll(b.transport);
  });

  test("a dialled address that does not hold the peer's key gets nothing", async () => {
    const ports = new Map<NodeId, number>();
    const a = await node(1, ports);
    // Node 2's address leads to a server holding node 3's key, which counts what reaches it.
    const other = certs.get(3)!;
    let received = 0;
    const connections: Promise<void>[] = [];
    const impostor = createTlsServer({ cert: other.certPem, key: other.keyPem }, (socket) => {
      socket.on("data", (chunk: Buffer) => {
        received += chunk.length;
      });
      socket.on("error", () => {});
    });
    impostor.on("connection", (socket: Socket) => connections.push(closed(socket)));
    await new Promise<void>((resolve) => impostor.listen(0, HOST, resolve));
    ports.set(2, (impostor.address() as AddressInfo).port);
    a.transport.send([heartbeat(1, 2, 1)]);
    await pollUntil(
      () => a.warnings.some((w) => /does not hold the key of node 2/.test(w)),
      10_000,
      () => new Error(`no refusal: ${a.warnings.join("; ")}`),
    );
    // Node 1 hung up on seeing the key; anything it had sent would have arrived before that end.
    assert.equal(connections.length, 1);
    await connections[0];
    assert.equal(received, 0, "bytes reached a server without node 2's key");
    impostor.close();
    await closeAll(a.transport);
  });

  test("only the leader may send a large frame, and only a snapshot", async () => {
    const ports = new Map<NodeId, number>();
    const b = await node(2, ports, 0, undefined, {
      maxSmallFrameBytes: 2048,
      maxFrameBytes: 1 << 20,
      largeFramesFrom: (from) => from === 1,
    });
    const snapshot = (from: NodeId): Message => ({
      type: "snapshot",
      from,
      to: 2,
      term: 1,
      snapshot: {
        meta: { index: 5, term: 1, membership: { voters: [1, 2, 3], learners: [] } },
        data: new Uint8Array(100_000),
      },
    });
    const follower = await dialAs(ports.get(2)!, certs.get(3));
    follower.write(encodeFrame(snapshot(3)));
    await closed(follower);
    assert.match(b.warnings[0]!, /node 3 .*exceeds the limit of 2048/);
    const leader = await dialAs(ports.get(2)!, certs.get(1));
    leader.write(encodeFrame(snapshot(1)));
    const received = await b.next();
    assert.equal(received.type === "snapshot" && received.snapshot.data.length, 100_000);
    leader.destroy();
    await closeAll(b.transport);
  });

  test("a connection that does not finish its handshake is closed after the handshake timeout", async () => {
    const ports = new Map<NodeId, number>();
    const b = await node(2, ports, 0, undefined, { handshakeMs: 150 });
    const silent = connect({ port: ports.get(2)!, host: HOST, localAddress: "127.0.0.6" });
    silent.on("error", () => {});
    const started = Date.now();
    await closed(silent);
    assert.ok(Date.now() - started >= 140);
    assert.match(b.warnings.join("\n"), /127\.0\.0\.6/);
    await closeAll(b.transport);
  });

  test("a peer that restarts is reconnected to", async () => {
    const ports = new Map<NodeId, number>();
    const a = await node(1, ports);
    const b = await node(2, ports);
    a.transport.send([heartbeat(1, 2, 1)]);
    await b.next();
    const port = ports.get(2)!;
    await b.transport.close();

    const restarted = await node(2, ports, port);
    // Raft resends on every heartbeat; messages sent while the connection was down are dropped.
    let ctx = 1;
    const resend = setInterval(() => a.transport.send([heartbeat(1, 2, ++ctx)]), 10);
    const first = await restarted.next();
    clearInterval(resend);
    assert.equal(first.type, "heartbeat");
    assert.ok(first.type === "heartbeat" && first.ctx > 1);
    await closeAll(a.transport, restarted.transport);
  });

  test("a connection that delivers nothing (a healed partition) is dropped and dialled again", async () => {
    const ports = new Map<NodeId, number>();
    const a = await node(1, ports, 0, 100);
    const b = await node(2, ports);
    const hole = await blackHoleFirst(ports, 2);
    let ctx = 0;
    const resend = setInterval(() => a.transport.send([heartbeat(1, 2, ++ctx)]), 10);
    const first = await b.next();
    clearInterval(resend);
    assert.equal(hole.held.length, 1, "the first connection went into the black hole");
    assert.ok(first.type === "heartbeat" && first.ctx > 1);
    assert.ok(a.warnings.some((warning) => /no word from node 2/.test(warning)));
    await hole.close();
    await closeAll(a.transport, b.transport);
  });

  test("a peer that keeps talking to us but does not hear us is still dialled again", {
    timeout: 10_000,
  }, async () => {
    const ports = new Map<NodeId, number>();
    const a = await node(1, ports, 0, 100);
    const b = await node(2, ports, 0, 100);
    // Node 2's connection to node 1 works; node 1's to node 2 goes into a black hole. Node 2's
    // messages (a candidate asking for votes, say) must not pass for proof that node 1's arrive.
    const hole = await blackHoleFirst(ports, 2);
    let ctx = 0;
    const resend = setInterval(() => {
      ctx++;
      a.transport.send([heartbeat(1, 2, ctx)]);
      b.transport.send([heartbeat(2, 1, ctx)]);
    }, 10);
    const first = await b.next();
    clearInterval(resend);
    assert.equal(hole.held.length, 1, "the first connection went into the black hole");
    assert.ok(a.inbox.length > 0, "node 1 heard node 2 all along");
    assert.ok(first.type === "heartbeat" && first.ctx > 1);
    assert.ok(a.warnings.some((warning) => /no word from node 2/.test(warning)));
    await hole.close();
    await closeAll(a.transport, b.transport);
  });

  test("a busy, healthy connection is never dialled again", async (t) => {
    const ports = new Map<NodeId, number>();
    // Both nodes on the test's time. Node 2 never sends to node 1: only its acknowledgements
    // (every 100 ms at most) can keep the link from counting as stalled after 400 ms of traffic.
    // An acknowledgement leaves node 2 in its timer's callback, during clock.advance, and its
    // bytes are in node 1's socket buffer once that write returns (loopback); advance then lets
    // the event loop turn over, so node 1 has read it before the next step's send looks at the
    // stall. How long the machine takes for any of this changes nothing.
    const clock = new FakeClock();
    let dials = 0;
    const a = await node(1, ports, 0, 400, {
      clock,
      resolve: (peer) => {
        dials++;
        return ports.has(peer) ? `${HOST}:${ports.get(peer)}` : undefined;
      },
    });
    const b = await node(2, ports, 0, 400, { clock });
    t.after(() => closeAll(a.transport, b.transport));
    for (let ctx = 1; ctx <= 60; ctx++) {
      a.transport.send([heartbeat(1, 2, ctx)]);
      // A link counted as stalled warns in this send; its message would then never arrive.
      assert.deepEqual(a.warnings, [], `after ${clock.time} ms of traffic, stall after 400 ms`);
      assert.deepEqual(await b.next(), heartbeat(1, 2, ctx));
      await clock.advance(15);
    }
    assert.equal(clock.time, 900);
    assert.equal(dials, 1, "one connection all along");
  });

  test("messages to a peer without an address are dropped", async () => {
    const ports = new Map<NodeId, number>();
    const a = await node(1, ports);
    const b = await node(2, ports);
    a.transport.send([heartbeat(1, 9, 1), heartbeat(1, 2, 2)]);
    assert.deepEqual(await b.next(), heartbeat(1, 2, 2));
    await closeAll(a.transport, b.transport);
  });

  test("connections beyond a source's cap are closed at once; other sources still get in", async () => {
    const ports = new Map<NodeId, number>();
    // A handshake timeout of a minute: within this test only the cap closes a connection.
    const b = await node(2, ports, 0, undefined, {
      admission: { perSource: 3, total: 100 },
      handshakeMs: 60_000,
    });
    const attackers = await Promise.all(
      Array.from({ length: 10 }, async () => {
        const socket = connect({ port: ports.get(2)!, host: HOST, localAddress: "127.0.0.9" });
        socket.on("error", () => {});
        await once(socket, "connect");
        return socket;
      }),
    );
    const ours = new Set(attackers.map((socket) => socket.localPort));
    const toNode = {
      address: HOST,
      port: ports.get(2)!,
      from: (remote: string, port: number) => remote === "127.0.0.9" && ours.has(port),
    };
    // The transport admits or refuses each connection in the callback that accepts it, and
    // that callback has run on this thread once the kernel holds none of them back.
    await untilAccepted(toNode);
    assert.equal(heldOpen(toNode), 3, "three held by the node");
    await pollUntil(
      () => attackers.filter((socket) => socket.destroyed).length >= 7,
      10_000,
      () => new Error("the refused connections never closed"),
    );
    assert.equal(attackers.filter((socket) => socket.destroyed).length, 7, "seven closed");
    assert.equal(b.warnings.length, 1, `one line for the whole flood: ${b.warnings.join("; ")}`);
    assert.match(b.warnings[0]!, /refusing a connection from 127\.0\.0\.9: .*limit 3/);
    // A member from its own address is not affected by the flood.
    const a = await node(1, ports, 0, undefined, { host: "127.0.0.8" });
    a.transport.send([heartbeat(1, 2, 1)]);
    assert.deepEqual(await b.next(), heartbeat(1, 2, 1));
    for (const socket of attackers) socket.destroy();
    await closeAll(a.transport, b.transport);
  });

  test("a source the node does not take is closed on arrival, before it holds a slot", async () => {
    const ports = new Map<NodeId, number>();
    // As with the mesh: only sources inside the range (here 127.0.0.0-3) are taken.
    const range = parseCidr("127.0.0.0/30");
    const b = await node(2, ports, 0, undefined, {
      admission: { perSource: 1, total: 1 },
      refuseSource: (address) => outsideMesh(range, address),
    });
    const outsiders: Socket[] = [];
    for (let i = 0; i < 3; i++) {
      const socket = connect({ port: ports.get(2)!, host: HOST, localAddress: "127.0.0.7" });
      socket.on("error", () => {});
      outsiders.push(socket);
    }
    await Promise.all(outsiders.map(closed));
    assert.deepEqual(b.warnings, [
      "raft transport: refusing a connection from 127.0.0.7: it did not come through the mesh (its address is outside 127.0.0.0/30)",
    ]);
    // No slot was taken: a member inside the range still gets in though the cap is one.
    const a = await node(1, ports, 0, undefined, { host: "127.0.0.2" });
    a.transport.send([heartbeat(1, 2, 1)]);
    assert.deepEqual(await b.next(), heartbeat(1, 2, 1));
    await closeAll(a.transport, b.transport);
  });

  test("an idle authenticated connection is closed", async () => {
    const ports = new Map<NodeId, number>();
    const b = await node(2, ports, 0, undefined, { idleMs: 100 });
    const socket = await dialAs(ports.get(2)!, certs.get(1));
    const started = Date.now();
    await once(socket, "close");
    assert.ok(Date.now() - started >= 90);
    await closeAll(b.transport);
  });

  test("a receiver that throws closes the connection with a warning and the node lives on", async () => {
    const ports = new Map<NodeId, number>();
    const a = await node(1, ports);
    let calls = 0;
    const b = await node(2, ports, 0, undefined, {
      onMessage: () => {
        calls++;
        throw new RangeError("boom");
      },
    });
    a.transport.send([heartbeat(1, 2, 1)]);
    await pollUntil(
      () => b.warnings.length > 0,
      10_000,
      () => new Error("the connection was not closed"),
    );
    assert.equal(calls, 1);
    assert.match(b.warnings[0]!, /closing the connection from node 1 \(127\.0\.0\.1:\d+\): boom/);
    await closeAll(a.transport, b.transport);
  });

  test("peers of different major protocol versions part at once, each naming both versions, and the dialler waits", async (t) => {
    const ports = new Map<NodeId, number>();
    // The dialler's time is the test's: its back-off and its pause run only when the test says.
    const clock = new FakeClock();
    let dials = 0;
    const a = await node(1, ports, 0, undefined, {
      protocol: { major: 2, minor: 0 },
      clock,
      // Every dial starts by resolving the peer's address, in the same call: this counts them.
      resolve: (peer) => {
        dials++;
        return ports.has(peer) ? `${HOST}:${ports.get(peer)}` : undefined;
      },
    });
    const b = await node(2, ports);
    t.after(() => closeAll(a.transport, b.transport));
    a.transport.send([heartbeat(1, 2, 1)]);
    assert.equal(dials, 1);
    await pollUntil(
      () => a.warnings.length > 0 && b.warnings.length > 0,
      10_000,
      () => new Error(`no parting: ${[...a.warnings, ...b.warnings].join("; ")}`),
    );
    const ours = formatProtocol(PROTOCOL_VERSION).replace(".", "\\.");
    assert.match(
      a.warnings[0]!,
      new RegExp(
        `node 2 at 127\\.0\\.0\\.1:\\d+ speaks protocol ${ours}, this node 2\\.0: not sending to it for 60 s`,
      ),
    );
    assert.match(
      b.warnings[0]!,
      new RegExp(
        `from node 1 \\(127\\.0\\.0\\.1:\\d+\\): it speaks protocol 2\\.0, this node ${ours}: refusing it`,
      ),
    );
    // The parted connection's close sets the reconnect back-off timer, the one timer left.
    await pollUntil(
      () => clock.pending === 1,
      10_000,
      () => new Error("the parted connection never closed"),
    );
    // No redial loop: a heartbeat every stall period for the rest of the minute dials nothing,
    // though the back-off timer fires along the way.
    for (let second = 0; second < 58; second += 2) {
      a.transport.send([heartbeat(1, 2, 2 + second)]);
      await clock.advance(2_000);
    }
    assert.equal(dials, 1, "no dial within the minute");
    assert.equal(clock.pending, 0, "the back-off timer fired");
    assert.equal(a.warnings.length, 1);
    // After the minute the dialler tries again, so the count above would have seen a redial.
    await clock.advance(2_000);
    a.transport.send([heartbeat(1, 2, 100)]);
    assert.equal(dials, 2, "a dial after the minute");
  });

  test("peers of the same major version talk whatever their minor", async () => {
    const ports = new Map<NodeId, number>();
    const a = await node(1, ports, 0, undefined, { protocol: { major: 1, minor: 7 } });
    const b = await node(2, ports);
    a.transport.send([heartbeat(1, 2, 1)]);
    assert.deepEqual(await b.next(), heartbeat(1, 2, 1));
    b.transport.send([heartbeat(2, 1, 2)]);
    assert.deepEqual(await a.next(), heartbeat(2, 1, 2));
    assert.deepEqual([...a.warnings, ...b.warnings], []);
    // Each end knows what the other's hello said on its own connection to it.
    assert.deepEqual(a.transport.peerProtocol(2), PROTOCOL_VERSION);
    assert.deepEqual(b.transport.peerProtocol(1), { major: 1, minor: 7 });
    assert.equal(a.transport.peerProtocol(3), undefined, "no connection to node 3");
    await closeAll(a.transport, b.transport);
  });

  test("once the cluster committed a newer minor, a peer below it is refused by both ends, also on a connection made before; nothing reaches it", async (t) => {
    const ports = new Map<NodeId, number>();
    let cluster = { major: 1, minor: 0 };
    const a = await node(1, ports, 0, undefined, {
      protocol: { major: 1, minor: 2 },
      clusterProtocol: () => cluster,
    });
    // b is older and does not know the cluster moved on until a refuses it and says why.
    const told: { major: number; minor: number }[] = [];
    let dials = 0;
    const b = await node(2, ports, 0, undefined, {
      protocol: { major: 1, minor: 1 },
      refusedBelow: (version) => told.push(version),
      resolve: (peer) => {
        dials++;
        return ports.has(peer) ? `${HOST}:${ports.get(peer)}` : undefined;
      },
    });
    t.after(() => closeAll(a.transport, b.transport));
    a.transport.send([heartbeat(1, 2, 1)]);
    assert.deepEqual(await b.next(), heartbeat(1, 2, 1), "the baseline cluster takes 1.1");
    b.transport.send([heartbeat(2, 1, 1)]);
    assert.deepEqual(await a.next(), heartbeat(2, 1, 1), "both ways");
    // The raise: b's connection to a, and a's to b, were made before it.
    cluster = { major: 1, minor: 2 };
    a.transport.send([heartbeat(1, 2, 2)]);
    assert.match(
      a.warnings[0] ?? "",
      /^raft transport: node 2 at 127\.0\.0\.1:\d+ speaks protocol 1\.1, this node 1\.2, and the cluster's protocol is 1\.2: not sending to it for 60 s$/,
    );
    for (let ctx = 3; ctx < 13; ctx++) {
      b.transport.send([heartbeat(2, 1, ctx)]);
      a.transport.send([heartbeat(1, 2, ctx)]);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const refusals = () => a.warnings.filter((line) => line.endsWith(": refusing it"));
    await pollUntil(
      () => refusals().length > 0,
      10_000,
      () => new Error(`no refusal: ${a.warnings.join("; ")}`),
    );
    assert.match(
      refusals()[0]!,
      /closing the connection from node 2 \(127\.0\.0\.1:\d+\): it speaks protocol 1\.1, this node 1\.2, and the cluster's protocol is 1\.2: refusing it$/,
    );
    assert.equal(refusals().length, 1, "b's one connection, refused at its next frame");
    assert.equal(a.warnings.length, 2, a.warnings.join("\n"));
    assert.deepEqual(told, [{ major: 1, minor: 2 }], "b learnt the cluster's protocol");
    assert.equal(dials, 1, "b leaves a alone after the refusal, though it had more to send");
    assert.match(
      b.warnings.join("\n"),
      /^raft transport: node 1 at 127\.0\.0\.1:\d+ refused this node: the cluster's protocol is 1\.2, this node 1\.1: not sending to it for 60 s$/,
    );
    assert.deepEqual(a.inbox, [], "nothing from b was taken");
    assert.deepEqual(b.inbox, [], "nothing after the raise reached b");
  });

  test("a member that does not start with a hello is closed", async () => {
    const ports = new Map<NodeId, number>();
    const b = await node(2, ports);
    const member = await dialAs(ports.get(2)!, certs.get(1), false);
    member.write(encodeFrame(heartbeat(1, 2, 1)));
    await closed(member);
    assert.equal(b.inbox.length, 0);
    assert.match(b.warnings[0]!, /did not start with a Mill Raft hello/);
    await closeAll(b.transport);
  });
});
