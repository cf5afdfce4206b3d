/**
 * The Node adapter's protocol limits on real sockets: the source address reaches the handler,
 * oversized heads get 431, slow clients and stalled TLS handshakes are cut off, a source's
 * connections beyond the cap are closed while other sources are still served, and a source the
 * server refuses is closed before its handshake.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { request } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { createClusterIdentity } from "../../../lib/identity/x509.ts";
import { nodePlatform } from "../../../lib/platform/nodejs/index.ts";
import type { Server, ServerLimits } from "../../../lib/platform/types.ts";

const HOST = "127.0.0.1";
const LIMITS: ServerLimits = {
  maxHeaderBytes: 4096,
  headersTimeoutMs: 300,
  requestTimeoutMs: 300,
  connectionsPerSource: 3,
};

function get(port: number, localAddress: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ host: HOST, port, localAddress, path: "/", headers, agent: false });
    req.on("response", (response) => {
      let body = "";
      response.on("data", (chunk) => {
        body += chunk;
      });
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

async function openSocket(port: number, localAddress: string): Promise<Socket> {
  const socket = connect({ host: HOST, port, localAddress });
  // A refused connection may be reset right after connecting; untilClosed observes that.
  socket.on("error", () => undefined);
  await once(socket, "connect");
  return socket;
}

/** Everything the server sends until it closes the connection. */
async function untilClosed(socket: Socket): Promise<string> {
  let received = "";
  socket.on("data", (chunk) => {
    received += chunk;
  });
  // Not events.once: it would reject on the reset that a refused connection may see.
  await new Promise((resolve) => socket.once("close", resolve));
  return received;
}

describe("node adapter limits (plain HTTP)", () => {
  let server: Server;
  before(async () => {
    server = await nodePlatform.serve({
      hostname: HOST,
      port: 0,
      limits: LIMITS,
      fetch: async (request, client) => {
        await request.arrayBuffer();
        return new Response(client.remoteAddress);
      },
    });
  });
  after(() => server.close());

  test("the handler sees the source address of each connection", async () => {
    assert.deepEqual(await get(server.port, "127.0.0.7"), { status: 200, body: "127.0.0.7" });
    assert.deepEqual(await get(server.port, "127.0.0.8"), { status: 200, body: "127.0.0.8" });
  });

  test("a request head over the limit is 431 and never reaches the handler", async () => {
    const big = await get(server.port, "127.0.0.9", { "x-filler": "a".repeat(8192) });
    assert.equal(big.status, 431);
    assert.equal(big.body, "");
  });

  test("a client that stops mid-head is answered 408 and disconnected", async () => {
    const socket = await openSocket(server.port, "127.0.0.10");
    socket.write("GET / HTTP/1.1\r\nHost: x\r\n");
    assert.match(await untilClosed(socket), /^HTTP\/1\.1 408 /);
  });

  test("a client that stops mid-body is answered 408 and disconnected", async () => {
    const socket = await openSocket(server.port, "127.0.0.11");
    socket.write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{");
    assert.match(await untilClosed(socket), /^HTTP\/1\.1 408 /);
  });

  test("connections beyond the per-source cap are closed; other sources still served", async () => {
    const held = await Promise.all(
      Array.from({ length: LIMITS.connectionsPerSource }, () =>
        openSocket(server.port, "127.0.0.12"),
      ),
    );
    // Keep the held connections busy with an unfinished head so they stay open.
    for (const socket of held) socket.write("GET / HTTP/1.1\r\n");
    const excess = await openSocket(server.port, "127.0.0.12");
    excess.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal(await untilClosed(excess), "", "closed without an answer");
    assert.deepEqual(await get(server.port, "127.0.0.13"), { status: 200, body: "127.0.0.13" });
    // The server times the held connections out; their slots are free once it has closed them.
    await Promise.all(held.map(untilClosed));
    assert.equal((await get(server.port, "127.0.0.12")).status, 200, "freed once they close");
  });
});

describe("node adapter limits (TLS)", () => {
  let server: Server;
  before(async () => {
    const identity = createClusterIdentity();
    server = await nodePlatform.serve({
      hostname: HOST,
      port: 0,
      limits: LIMITS,
      tls: { cert: identity.certPem, key: identity.keyPem },
      fetch: () => new Response("ok"),
    });
  });
  after(() => server.close());

  test("a client that never starts its TLS handshake is disconnected", async () => {
    const socket = await openSocket(server.port, "127.0.0.14");
    assert.equal(await untilClosed(socket), "");
  });

  test("a source the server does not take is closed on arrival, before any handshake", async () => {
    const refused: string[] = [];
    const identity = createClusterIdentity();
    const picky = await nodePlatform.serve({
      hostname: HOST,
      port: 0,
      limits: LIMITS,
      tls: { cert: identity.certPem, key: identity.keyPem, requestClientCert: true },
      refuseSource: (address) => {
        if (address !== "127.0.0.16") return undefined;
        refused.push(address);
        return "not from the mesh";
      },
      fetch: () => new Response("ok"),
    });
    try {
      const outsider = await openSocket(picky.port, "127.0.0.16");
      assert.equal(await untilClosed(outsider), "", "closed without a byte of TLS");
      assert.deepEqual(refused, ["127.0.0.16"]);
      const answer = await new Promise<number>((resolve, reject) => {
        const req = httpsRequest({
          host: HOST,
          port: picky.port,
          localAddress: "127.0.0.17",
          rejectUnauthorized: false,
          agent: false,
        });
        req.on("response", (response) => {
          response.resume();
          resolve(response.statusCode ?? 0);
        });
        req.on("error", reject);
        req.end();
      });
      assert.equal(answer, 200, "another source is served");
    } finally {
      await picky.close();
    }
  });

  test("the per-source cap applies before any handshake", async () => {
    const held = await Promise.all(
      Array.from({ length: LIMITS.connectionsPerSource }, () =>
        openSocket(server.port, "127.0.0.15"),
      ),
    );
    const excess = await openSocket(server.port, "127.0.0.15");
    const closedFirst = await Promise.race([
      untilClosed(excess).then(() => "excess"),
      ...held.map((socket) => untilClosed(socket).then(() => "held")),
    ]);
    assert.equal(closedFirst, "excess");
    for (const socket of held) socket.destroy();
  });
});
