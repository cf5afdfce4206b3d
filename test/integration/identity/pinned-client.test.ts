/**
 * pinnedRequest against real TLS servers on 127.0.0.1: the right pin gets through, a different
 * certificate is refused before any request byte is sent, keep-alive reuses checked connections,
 * and the same holds when the client runs under Deno.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { once } from "node:events";
import { createServer as createHttpsServer } from "node:https";
import { type AddressInfo, createServer } from "node:net";
import { after, before, describe, it } from "node:test";
import type { TLSSocket } from "node:tls";
import { fileURLToPath } from "node:url";
import { fingerprintOfPem } from "../../../lib/identity/fingerprint.ts";
import {
  createPinnedAgent,
  PinMismatchError,
  pinnedRequest,
} from "../../../lib/identity/pinned-client.ts";
import { createClusterIdentity } from "../../../lib/identity/x509.ts";
import { type CountingServer, RECORD, startCountingServer } from "./tls-server.ts";

const host = "127.0.0.1";
const cluster = createClusterIdentity();
const impostor = createClusterIdentity();
const pin = fingerprintOfPem(cluster.certPem);
const impostorPin = fingerprintOfPem(impostor.certPem);
const authorization = "Bearer the-secret-part";

async function closedPort(): Promise<number> {
  const server = createServer().listen(0, host);
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, "close");
  return port;
}

/**
 * An HTTPS server with the cluster identity that closes idle kept-alive connections after
 * `keepAliveMs`; `nextClose()` resolves when the next connection ends, saying which side ended it.
 */
async function idleClosingServer(keepAliveMs: number) {
  const server = createHttpsServer({ key: cluster.keyPem, cert: cluster.certPem }, (req, res) => {
    req.resume();
    req.on("end", () => res.end(`${req.method} ${req.url}`));
  });
  server.keepAliveTimeout = keepAliveMs;
  const waiting: ((side: string) => void)[] = [];
  server.on("secureConnection", (socket: TLSSocket) => {
    let side = "server closed it";
    socket.once("end", () => {
      side = "client hung up first";
    });
    socket.once("close", () => waiting.shift()?.(side));
  });
  server.listen(0, host);
  await once(server, "listening");
  return {
    port: (server.address() as AddressInfo).port,
    nextClose: () => new Promise<string>((resolve) => waiting.push(resolve)),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe("pinnedRequest", () => {
  let real: CountingServer;
  let fake: CountingServer;
  before(async () => {
    real = await startCountingServer(cluster);
    fake = await startCountingServer(impostor);
  });
  after(async () => {
    await real.close();
    await fake.close();
  });

  it("with the right pin, sends the request and returns status, headers and body", async () => {
    const reply = await pinnedRequest({
      host,
      port: real.port,
      fingerprint: pin,
      method: "POST",
      path: "/v1/join",
      headers: { authorization },
      body: "hello",
    });
    assert.equal(reply.status, 200);
    assert.equal(new TextDecoder().decode(reply.body), "POST /v1/join");
    assert.equal(reply.headers["content-length"], "13");
    assert.deepEqual(real.authorizations, [authorization]);
    assert.ok(real.decryptedBytes() > 0);
    assert.ok(real.clientRecordTypes()[0]!.includes(RECORD.applicationData));
  });

  it("refuses a different certificate before sending a single request byte", async () => {
    await assert.rejects(
      pinnedRequest({
        host,
        port: fake.port,
        fingerprint: pin,
        method: "POST",
        path: "/v1/join",
        headers: { authorization },
        body: "hello",
      }),
      (error: unknown) => {
        assert.ok(error instanceof PinMismatchError);
        assert.equal(
          error.message,
          `server identity does not match the token (possible man-in-the-middle): expected ${pin}, got ${impostorPin}`,
        );
        return true;
      },
    );
    await fake.hungUp();
    assert.equal(fake.decryptedBytes(), 0);
    assert.deepEqual(fake.authorizations, []);
    // Node's client stops after the ClientHello: no encrypted record of any kind left it.
    assert.deepEqual(fake.clientRecordTypes(), [[RECORD.handshake]]);
  });

  it("reuses one checked connection for several requests through a keep-alive agent", async () => {
    const keepAlive = await startCountingServer(cluster);
    const agent = createPinnedAgent(pin);
    try {
      for (const path of ["/a", "/b", "/c"]) {
        const reply = await pinnedRequest({
          host,
          port: keepAlive.port,
          fingerprint: pin,
          path,
          agent,
        });
        assert.equal(new TextDecoder().decode(reply.body), `GET ${path}`);
      }
      assert.equal(keepAlive.clientRecordTypes().length, 1);
    } finally {
      agent.destroy();
      await keepAlive.close();
    }
  });

  it("checks a new connection after the server closed an idle one (no resumed session)", async () => {
    // A resumed TLS session carries no peer certificate, so a pin check on it fails: every
    // connection after the first must be a full handshake.
    const server = await idleClosingServer(100);
    const agent = createPinnedAgent(pin);
    try {
      for (const path of ["/first", "/after-idle", "/again"]) {
        const closed = server.nextClose();
        const reply = await pinnedRequest({
          host,
          port: server.port,
          fingerprint: pin,
          path,
          agent,
        });
        assert.equal(new TextDecoder().decode(reply.body), `GET ${path}`);
        await closed;
      }
    } finally {
      agent.destroy();
      await server.close();
    }
  });

  it("lets an idle kept-alive socket go before the server's announced keep-alive timeout", async () => {
    // The server announces `Keep-Alive: timeout=3`; a client that waits for the server to close
    // can send a request onto a socket the server is already closing.
    const server = await idleClosingServer(3_000);
    const agent = createPinnedAgent(pin);
    try {
      const closed = server.nextClose();
      await pinnedRequest({ host, port: server.port, fingerprint: pin, path: "/", agent });
      assert.equal(await closed, "client hung up first");
    } finally {
      agent.destroy();
      await server.close();
    }
  });

  it("refuses through a keep-alive agent too, and the agent stays usable for its pin", async () => {
    const agent = createPinnedAgent(pin);
    try {
      await assert.rejects(
        pinnedRequest({ host, port: fake.port, fingerprint: pin, path: "/", agent }),
        PinMismatchError,
      );
      const reply = await pinnedRequest({
        host,
        port: real.port,
        fingerprint: pin,
        path: "/",
        agent,
      });
      assert.equal(reply.status, 200);
    } finally {
      agent.destroy();
    }
  });

  it("rejects an agent pinned to another fingerprint without connecting", async () => {
    const agent = createPinnedAgent(impostorPin);
    const connectionsBefore = real.clientRecordTypes().length;
    try {
      await assert.rejects(
        pinnedRequest({ host, port: real.port, fingerprint: pin, path: "/", agent }),
        { message: `pinnedRequest: the agent is pinned to ${impostorPin}, not to ${pin}` },
      );
      assert.equal(real.clientRecordTypes().length, connectionsBefore);
    } finally {
      agent.destroy();
    }
  });

  it("names the target when nothing listens", async () => {
    const port = await closedPort();
    await assert.rejects(pinnedRequest({ host, port, fingerprint: pin, path: "/v1/status" }), {
      message: new RegExp(`^https://127\\.0\\.0\\.1:${port}/v1/status: .*ECONNREFUSED`),
    });
  });

  it("gives up at the deadline when the server never answers", async () => {
    const silent = await startCountingServer(cluster, false);
    try {
      await assert.rejects(
        pinnedRequest({ host, port: silent.port, fingerprint: pin, path: "/slow", timeoutMs: 200 }),
        { message: `https://127.0.0.1:${silent.port}/slow: no complete reply within 200 ms` },
      );
    } finally {
      await silent.close();
    }
  });

  it("behaves the same when the client (and a server) run under Deno", async () => {
    const script = fileURLToPath(new URL("./deno-pinned-client.ts", import.meta.url));
    const denoImpostor = await startCountingServer(impostor);
    const authorizationsBefore = real.authorizations.length;
    try {
      const stdout = await new Promise<string>((resolve, reject) => {
        execFile(
          "npx",
          ["deno", "run", "-A", script, String(real.port), pin, String(denoImpostor.port)],
          { timeout: 60_000 },
          (error, out, err) =>
            error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out),
        );
      });
      const seen = JSON.parse(stdout);
      assert.deepEqual(seen.toNode, { status: 200, body: "GET /deno" });
      assert.deepEqual(real.authorizations.slice(authorizationsBefore), ["Bearer from-deno"]);
      assert.equal(seen.toImpostor.pinMismatch, true);
      assert.match(seen.toImpostor.error, new RegExp(`expected ${pin}, got ${impostorPin}$`));
      await denoImpostor.hungUp();
      // Deno's TLS stack sends its own Finished before the check runs; still no request byte.
      assert.equal(denoImpostor.decryptedBytes(), 0);
      assert.deepEqual(denoImpostor.authorizations, []);
      assert.deepEqual(seen.toDeno, { status: 200, body: "served by deno" });
      assert.equal(seen.toDenoWrongPin.pinMismatch, true);
      assert.deepEqual(seen.keepAlive, [
        { status: 200, body: "served by deno" },
        { status: 200, body: "served by deno" },
      ]);
      assert.deepEqual(seen.denoServerSaw, ["Bearer from-deno", "undefined", "undefined"]);
    } finally {
      await denoImpostor.close();
    }
  });
});
