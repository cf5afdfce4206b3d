/**
 * Reserved source ports on real sockets (loopback, as root): a local user who fills its
 * address's unprivileged slots on a peer's Raft port or internal API does not lock out the
 * member's agent on that address, which dials from a reserved port and waits in the privileged
 * pool, then authenticates as before. A process that may not bind low ports (nobody) dials from
 * an ordinary port and says so once.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import process from "node:process";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { fingerprintOfPem } from "../../../lib/identity/fingerprint.ts";
import { PinnedAgent, pinnedRequest } from "../../../lib/identity/pinned-client.ts";
import { createClusterIdentity } from "../../../lib/identity/x509.ts";
import { DENO_PORT_ERRORS } from "../../../lib/platform/deno/index.ts";
import { platform } from "../../../lib/platform/index.ts";
import { nodePlatform } from "../../../lib/platform/nodejs/index.ts";
import { NODE_PORT_ERRORS, reservedDialler } from "../../../lib/platform/nodejs/reserved-dial.ts";
import { startTransport } from "../../../lib/raft/transport/transport.ts";
import type { Message } from "../../../lib/raft/types.ts";
import { pollFor } from "../../../lib/shared/poll.ts";
import { PROTOCOL_VERSION } from "../../../lib/shared/protocol.ts";
import { type Dial, RESERVED_PORTS } from "../../../lib/shared/reserved-ports.ts";
import { heldOpen, untilAccepted } from "../../shared/tcp-table.ts";
import { memberCertificates, transportTls } from "../raft/member-tls.ts";

const HOST = "127.0.0.1";
const asRoot = process.getuid?.() === 0 ? false : "binding ports below 1024 needs root";
const CHILD = fileURLToPath(new URL("./reserved-dial-child.ts", import.meta.url));
const REPO = fileURLToPath(new URL("../../../", import.meta.url));

/** `count` idle TCP connections to `port` from `localAddress` (ordinary ports: a local user's). */
async function fill(port: number, localAddress: string, count: number): Promise<Socket[]> {
  return Promise.all(
    Array.from({ length: count }, async () => {
      const socket = connect({ host: HOST, port, localAddress });
      socket.on("error", () => {});
      await once(socket, "connect");
      return socket;
    }),
  );
}

/** The platform's reserved dial, leaving from `localAddress`; records each local port. */
function recorded(localAddress: string, ports: number[], warnings: string[]): Dial {
  const dial = platform.reservedDialler((line) => warnings.push(line));
  return async (target) => {
    const socket = await dial({ ...target, localAddress });
    ports.push(socket.localPort ?? 0);
    return socket;
  };
}

const reserved = (port: number) => port >= RESERVED_PORTS.first && port <= RESERVED_PORTS.last;

describe("reserved source ports", { skip: asRoot }, () => {
  test("Raft: a member dialling from a reserved port gets in while a local user on its address holds every other slot", async () => {
    const certs = memberCertificates([1, 2]);
    const inbox: Message[] = [];
    const bWarnings: string[] = [];
    // A handshake timeout of a minute: within this test only the cap closes a connection.
    const b = await startTransport({
      id: 2,
      host: HOST,
      port: 0,
      resolve: () => undefined,
      onMessage: (message) => inbox.push(message),
      tls: transportTls(certs, 2),
      protocol: PROTOCOL_VERSION,
      admission: { perSource: 3, total: 100 },
      handshakeMs: 60_000,
      warn: (line) => bWarnings.push(line),
    });
    const attackers = await fill(b.port, "127.0.0.31", 4);
    const ours = new Set(attackers.map((socket) => socket.localPort));
    const toNode = {
      address: HOST,
      port: b.port,
      from: (remote: string, port: number) => remote === "127.0.0.31" && ours.has(port),
    };
    await untilAccepted(toNode);
    assert.equal(heldOpen(toNode), 3, "the local user holds every unprivileged slot");
    const ports: number[] = [];
    const aWarnings: string[] = [];
    const a = await startTransport({
      id: 1,
      host: "127.0.0.31",
      port: 0,
      resolve: (id) => (id === 2 ? `${HOST}:${b.port}` : undefined),
      onMessage: () => {},
      tls: transportTls(certs, 1),
      protocol: PROTOCOL_VERSION,
      minBackoffMs: 10,
      dial: recorded("127.0.0.31", ports, aWarnings),
      warn: (line) => aWarnings.push(line),
    });
    const heartbeat: Message = { type: "heartbeat", from: 1, to: 2, term: 1, commit: 0, ctx: 7 };
    try {
      // Sent again until it arrives, as Raft would: the first may go before the dial is done.
      await pollFor(
        () => {
          if (inbox.length > 0) return true;
          a.send([heartbeat]);
          return false;
        },
        10_000,
        50,
      );
      assert.deepEqual(inbox[0], heartbeat, "authenticated and delivered");
      assert.equal(ports.length, 1, `one dial: ${aWarnings.join("; ")}`);
      assert.ok(reserved(ports[0]!), `dialled from port ${ports[0]}`);
      assert.deepEqual(aWarnings, []);
      assert.equal(heldOpen(toNode), 3, "the local user's connections are still held");
    } finally {
      for (const socket of attackers) socket.destroy();
      await a.close();
      await b.close();
    }
  });

  test("internal API: a member's call from a reserved port is served while a local user holds the per-source cap", async () => {
    const identity = createClusterIdentity();
    const server = await nodePlatform.serve({
      hostname: HOST,
      port: 0,
      limits: {
        maxHeaderBytes: 4096,
        headersTimeoutMs: 30_000,
        requestTimeoutMs: 30_000,
        connectionsPerSource: 2,
      },
      tls: { cert: identity.certPem, key: identity.keyPem, requestClientCert: true },
      fetch: (_request, client) => new Response(client.remoteAddress),
    });
    const held = await fill(server.port, "127.0.0.32", 2);
    const ports: number[] = [];
    const warnings: string[] = [];
    const agent = new PinnedAgent(
      fingerprintOfPem(identity.certPem),
      {},
      recorded("127.0.0.32", ports, warnings),
    );
    try {
      // The cap is full for ordinary ports: another one is closed before any TLS.
      const excess = await fill(server.port, "127.0.0.32", 1);
      await new Promise((resolve) => excess[0]!.once("close", resolve));
      const reply = await pinnedRequest({
        host: HOST,
        port: server.port,
        path: "/v1/internal/peers",
        agent,
        timeoutMs: 5_000,
      });
      assert.equal(reply.status, 200);
      assert.equal(new TextDecoder().decode(reply.body), "127.0.0.32");
      assert.equal(ports.length, 1);
      assert.ok(reserved(ports[0]!), `called from port ${ports[0]}`);
      assert.ok(
        held.every((socket) => !socket.destroyed),
        "the held connections stay open",
      );
    } finally {
      agent.destroy();
      for (const socket of held) socket.destroy();
      await server.close();
    }
  });

  test("a reserved port already used to the same peer moves the dial to the next port", async () => {
    const server = await nodePlatform.serve({
      hostname: HOST,
      port: 0,
      fetch: () => new Response("ok"),
    });
    // Each runtime's own codes: Deno reports the clash as EINVAL, Node as EADDRNOTAVAIL.
    const codes = "Deno" in globalThis ? DENO_PORT_ERRORS : NODE_PORT_ERRORS;
    const warnings: string[] = [];
    const dial = reservedDialler(
      (line) => warnings.push(line),
      codes,
      () => 0,
    );
    const target = { host: HOST, port: server.port, localAddress: "127.0.0.33", timeoutMs: 5_000 };
    try {
      const first = await dial(target);
      const second = await dial(target);
      assert.deepEqual(
        [first.localPort, second.localPort],
        [RESERVED_PORTS.first, RESERVED_PORTS.first + 1],
      );
      assert.deepEqual(warnings, []);
      first.destroy();
      second.destroy();
    } finally {
      await server.close();
    }
  });

  // The child runs under Node (tsx); under `deno test` the first two tests cover Deno's node:net.
  const underDeno = "Deno" in globalThis ? "runs its child with node --import tsx" : false;
  test("a process that may not bind low ports dials from ordinary ports and says so once", {
    skip: underDeno,
  }, async () => {
    const server = await nodePlatform.serve({
      hostname: HOST,
      port: 0,
      fetch: () => new Response("ok"),
    });
    try {
      const { stdout } = await promisify(execFile)(
        "setpriv",
        [
          "--reuid=nobody",
          "--regid=nogroup",
          "--clear-groups",
          "--",
          process.execPath,
          "--import",
          "tsx",
          CHILD,
          HOST,
          String(server.port),
        ],
        { cwd: REPO, timeout: 30_000 },
      );
      const { ports, warnings } = JSON.parse(stdout) as { ports: number[]; warnings: string[] };
      assert.equal(ports.length, 2);
      assert.ok(
        ports.every((port) => port >= 1024),
        `ordinary ports: ${ports.join(", ")}`,
      );
      assert.deepEqual(warnings, [
        "node-to-node connections leave from ordinary ports: this process may not bind ports below 1024 (it needs root or CAP_NET_BIND_SERVICE); peers count them with a local user's connections from this address",
      ]);
    } finally {
      await server.close();
    }
  });
});
