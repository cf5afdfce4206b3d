/**
 * The Node adapter hands the handler the certificate a TLS client showed, read once per
 * connection: the requests of one kept-alive connection carry the same object (so member.ts
 * hashes it once), another connection its own. Renegotiation, which could show another
 * certificate on the same connection, is refused.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { Agent, request } from "node:https";
import { after, before, describe, test } from "node:test";
import { connect } from "node:tls";
import { createNodeIdentity } from "../../../lib/identity/node-key.ts";
import { createClusterIdentity } from "../../../lib/identity/x509.ts";
import { nodePlatform } from "../../../lib/platform/nodejs/index.ts";
import type { Server } from "../../../lib/platform/types.ts";

const HOST = "127.0.0.1";
const client = createNodeIdentity();

function get(port: number, agent: Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: HOST, port, path: "/", agent }, (response) => {
      response.resume();
      response.on("end", () => resolve(response.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("node adapter: the client certificate", () => {
  let server: Server;
  const seen: (Uint8Array | undefined)[] = [];
  before(async () => {
    const identity = createClusterIdentity();
    server = await nodePlatform.serve({
      hostname: HOST,
      port: 0,
      tls: { cert: identity.certPem, key: identity.keyPem, requestClientCert: true },
      fetch: (_request, info) => {
        seen.push(info.clientCertificate);
        return new Response("ok");
      },
    });
  });
  after(() => server.close());

  test("one object per connection, for all of its requests", async () => {
    seen.length = 0;
    const options = { cert: client.certPem, key: client.keyPem, rejectUnauthorized: false };
    const kept = new Agent({ ...options, keepAlive: true, maxSockets: 1 });
    assert.equal(await get(server.port, kept), 200);
    assert.equal(await get(server.port, kept), 200);
    const other = new Agent({ ...options, keepAlive: true, maxSockets: 1 });
    assert.equal(await get(server.port, other), 200);
    kept.destroy();
    other.destroy();
    assert.equal(seen.length, 3);
    assert.ok(seen[0], "the certificate reached the handler");
    assert.equal(seen[1], seen[0], "the same object on one connection");
    assert.notEqual(seen[2], seen[0], "another connection has its own");
    assert.deepEqual(seen[2], seen[0], "of the same certificate");
  });

  test("a client that renegotiates is cut off", async () => {
    const socket = connect({
      host: HOST,
      port: server.port,
      cert: client.certPem,
      key: client.keyPem,
      rejectUnauthorized: false,
      // Renegotiation exists only up to TLS 1.2.
      maxVersion: "TLSv1.2",
    });
    socket.on("error", () => {});
    await once(socket, "secureConnect");
    socket.write(`GET / HTTP/1.1\r\nhost: ${HOST}\r\n\r\n`);
    await once(socket, "data");
    const outcome = await new Promise<string>((resolve) => {
      socket.once("close", () => resolve("closed"));
      socket.renegotiate({ rejectUnauthorized: false }, (error) =>
        resolve(error ? "refused" : "renegotiated"),
      );
    });
    assert.notEqual(outcome, "renegotiated");
    socket.destroy();
  });
});
