/**
 * Run by pinned-client.test.ts under Deno (`deno run -A`): the same identity and pinned-client
 * code, once against the Node test server and once against a node:https server inside Deno
 * serving an identity Deno generated. Prints one JSON line of outcomes for the Node side to assert.
 * Usage: deno-pinned-client.ts <port of the right server> <its fingerprint> <port of an impostor>
 */

import { once } from "node:events";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import process from "node:process";
import { fingerprintOfPem } from "../../../lib/identity/fingerprint.ts";
import {
  createPinnedAgent,
  PinMismatchError,
  pinnedRequest,
} from "../../../lib/identity/pinned-client.ts";
import { createClusterIdentity } from "../../../lib/identity/x509.ts";

const [rightPort, fingerprint, impostorPort] = process.argv.slice(2);
const host = "127.0.0.1";
const decoder = new TextDecoder();

async function outcome(request: Promise<{ status: number; body: Uint8Array }>) {
  try {
    const reply = await request;
    return { status: reply.status, body: decoder.decode(reply.body) };
  } catch (error) {
    return { error: String(error), pinMismatch: error instanceof PinMismatchError };
  }
}

const headers = { authorization: "Bearer from-deno" };
const toNode = await outcome(
  pinnedRequest({
    host,
    port: Number(rightPort),
    fingerprint: fingerprint!,
    path: "/deno",
    headers,
  }),
);
const toImpostor = await outcome(
  pinnedRequest({
    host,
    port: Number(impostorPort),
    fingerprint: fingerprint!,
    path: "/deno",
    headers,
  }),
);

const identity = createClusterIdentity();
const seen: string[] = [];
const server = createServer({ key: identity.keyPem, cert: identity.certPem }, (req, res) => {
  seen.push(String(req.headers.authorization));
  res.end("served by deno");
});
server.listen(0, host);
await once(server, "listening");
const denoPort = (server.address() as AddressInfo).port;
const denoPin = fingerprintOfPem(identity.certPem);
const toDeno = await outcome(
  pinnedRequest({ host, port: denoPort, fingerprint: denoPin, path: "/", headers }),
);
const toDenoWrongPin = await outcome(
  pinnedRequest({ host, port: denoPort, fingerprint, path: "/", headers }),
);
const agent = createPinnedAgent(denoPin);
const keepAlive = [];
for (const path of ["/1", "/2"]) {
  keepAlive.push(
    await outcome(pinnedRequest({ host, port: denoPort, fingerprint: denoPin, path, agent })),
  );
}
agent.destroy();
server.close();
console.log(
  JSON.stringify({ toNode, toImpostor, toDeno, toDenoWrongPin, keepAlive, denoServerSaw: seen }),
);
