import assert from "node:assert/strict";
import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";
import { describe, test } from "node:test";
import { encodeFrame } from "../../../lib/raft/transport/frames.ts";
import {
  startTransport,
  type Transport,
  type TransportOptions,
} from "../../../lib/raft/transport/transport.ts";
import type { Message, NodeId } from "../../../lib/raft/types.ts";

const HOST = "127.0.0.1";

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
 * Points `id`'s address at a black hole: it accepts the connection and never reads, like a peer
 * behind a cut link whose TCP connection survived; once it has one, the real address is back.
 */
async function blackHoleFirst(ports: Map<NodeId, number>, id: NodeId) {
  const realPort = ports.get(id)!;
  const held: Socket[] = [];
  const hole = createServer((socket) => {
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

  test("an oversized or malformed frame closes only its connection, with one warning", async () => {
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
      const attacker = connect(ports.get(2)!, HOST);
      await once(attacker, "connect");
      attacker.write(bad);
      await once(attacker, "close");
    }
    assert.equal(b.warnings.length, 3);
    assert.match(b.warnings[0]!, /exceeds the limit of 4096/);
    assert.match(b.warnings[1]!, /not CBOR/);
    assert.match(b.warnings[2]!, /message for node 7 reached node 2/);
    assert.equal(b.inbox.length, 0);

    a.transport.send([heartbeat(1, 2, 2)]);
    assert.deepEqual(await b.next(), heartbeat(1, 2, 2));
    await closeAll(a.transport, b.transport);
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

  test("a busy, healthy connection is never dialled again", { timeout: 10_000 }, async () => {
    const ports = new Map<NodeId, number>();
    // Node 2 never sends to node 1: only its acknowledgements (every 100 ms at most) can keep
    // the link from counting as stalled after 400 ms of traffic.
    const a = await node(1, ports, 0, 400);
    const b = await node(2, ports, 0, 400);
    for (let ctx = 1; ctx <= 60; ctx++) {
      a.transport.send([heartbeat(1, 2, ctx)]);
      await b.next();
      await new Promise((resolve) => setTimeout(resolve, 15));
    }
    assert.deepEqual(a.warnings, [], "900 ms or more of traffic, stall after 400 ms");
    await closeAll(a.transport, b.transport);
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
    const b = await node(2, ports, 0, undefined, { admission: { perSource: 3, total: 100 } });
    const attackers: Socket[] = [];
    for (let i = 0; i < 10; i++) {
      const socket = connect({ port: ports.get(2)!, host: HOST, localAddress: "127.0.0.9" });
      socket.on("error", () => {});
      attackers.push(socket);
    }
    const closed = await Promise.all(
      attackers.map(
        (socket) =>
          new Promise<boolean>((resolve) => {
            socket.once("close", () => resolve(true));
            setTimeout(() => resolve(false), 500);
          }),
      ),
    );
    assert.equal(closed.filter(Boolean).length, 7, "seven of ten closed by the node");
    assert.equal(b.warnings.length, 1, "one line for the whole flood");
    assert.match(b.warnings[0]!, /refusing a connection from 127\.0\.0\.9: .*limit 3/);
    // A member from its own address is not affected by the flood.
    const a = await node(1, ports, 0, undefined, { host: "127.0.0.8" });
    a.transport.send([heartbeat(1, 2, 1)]);
    assert.deepEqual(await b.next(), heartbeat(1, 2, 1));
    for (const socket of attackers) socket.destroy();
    await closeAll(a.transport, b.transport);
  });

  test("an idle inbound connection is closed", async () => {
    const ports = new Map<NodeId, number>();
    const b = await node(2, ports, 0, undefined, { idleMs: 100 });
    const socket = connect(ports.get(2)!, HOST);
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
    while (b.warnings.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(calls, 1);
    assert.match(b.warnings[0]!, /closing the connection from 127\.0\.0\.1:\d+: boom/);
    await closeAll(a.transport, b.transport);
  });
});
