/**
 * A TLS server of the runtime's adapter changes its certificate while it listens (what
 * `mill token rotate` needs of every node's public port): new handshakes get the new one, a
 * connection already open keeps working, and client certificates are still asked for. Under Node
 * this file also runs itself under Deno, whose adapter must do the same.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { Agent, request } from "node:https";
import { after, before, describe, test } from "node:test";
import type { TLSSocket } from "node:tls";
import { fileURLToPath } from "node:url";
import { fingerprintOfDer, fingerprintOfPem } from "../../../lib/identity/fingerprint.ts";
import { createNodeIdentity } from "../../../lib/identity/node-key.ts";
import { createClusterIdentity } from "../../../lib/identity/x509.ts";
import { platform } from "../../../lib/platform/index.ts";
import type { Server } from "../../../lib/platform/types.ts";

const HOST = "127.0.0.1";
const first = createClusterIdentity();
const second = createClusterIdentity();
const client = createNodeIdentity();
const underDeno = "Deno" in globalThis;

/** One GET; what the server showed on that socket and what it answered. */
function get(port: number, agent: Agent | false) {
  return new Promise<{ fingerprint: string; body: string; reused: boolean }>((resolve, reject) => {
    const req = request(
      {
        host: HOST,
        port,
        path: "/",
        agent,
        rejectUnauthorized: false,
        cert: client.certPem,
        key: client.keyPem,
      },
      (response) => {
        const socket = response.socket as TLSSocket;
        const fingerprint = fingerprintOfDer(socket.getPeerCertificate().raw);
        let body = "";
        response.on("data", (chunk) => {
          body += chunk;
        });
        response.on("end", () => resolve({ fingerprint, body, reused: req.reusedSocket }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe(`${platform.runtime} adapter: a TLS server changes its certificate while it listens`, () => {
  let server: Server;
  before(async () => {
    server = await platform.serve({
      hostname: HOST,
      port: 0,
      tls: { cert: first.certPem, key: first.keyPem, requestClientCert: true },
      fetch: (_request, info) =>
        new Response(info.clientCertificate ? fingerprintOfDer(info.clientCertificate) : "none"),
    });
  });
  after(() => server.close());

  test("new handshakes get the new certificate; an open connection keeps serving", async () => {
    const kept = new Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false });
    try {
      const before = await get(server.port, kept);
      assert.equal(before.fingerprint, fingerprintOfPem(first.certPem));
      assert.equal(before.body, fingerprintOfPem(client.certPem));
      server.replaceCertificate(second.certPem, second.keyPem);
      const fresh = await get(server.port, false);
      assert.equal(fresh.fingerprint, fingerprintOfPem(second.certPem));
      assert.equal(fresh.body, fingerprintOfPem(client.certPem), "client certificates still asked");
      const reused = await get(server.port, kept);
      assert.equal(reused.reused, true);
      assert.equal(reused.fingerprint, fingerprintOfPem(first.certPem));
    } finally {
      kept.destroy();
    }
  });

  test("a server without TLS has no certificate to change", async () => {
    const plain = await platform.serve({
      hostname: HOST,
      port: 0,
      fetch: () => new Response("plain"),
    });
    try {
      assert.throws(() => plain.replaceCertificate(second.certPem, second.keyPem), {
        message: "this server does not speak TLS",
      });
    } finally {
      await plain.close();
    }
  });

  test("the same holds under Deno", { skip: underDeno }, async () => {
    const deno = fileURLToPath(new URL("../../../node_modules/.bin/deno", import.meta.url));
    const child = spawn(deno, ["test", "-A", "--quiet", fileURLToPath(import.meta.url)], {
      env: { ...process.env, NO_COLOR: "1" },
    });
    let output = "";
    child.stdout.on("data", (chunk) => {
      output += chunk;
    });
    child.stderr.on("data", (chunk) => {
      output += chunk;
    });
    const code = await new Promise((resolve) => child.on("close", resolve));
    assert.equal(code, 0, output);
    assert.match(output, /deno adapter: a TLS server changes its certificate/);
    assert.match(output, /ok \| 1 passed \(2 steps\) \| 0 failed/, output);
  });
});
