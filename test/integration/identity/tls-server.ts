/**
 * A test HTTPS server (node:https, a Mill cluster identity) behind a raw TCP relay, so tests can
 * see both what a client put on the wire (TLS record types) and what the server decrypted.
 * That is how a test proves a refused client sent no request byte.
 */

import { once } from "node:events";
import { createServer as createHttpsServer } from "node:https";
import { type AddressInfo, connect, createServer as createTcpServer, type Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { ClusterIdentity } from "../../../lib/identity/x509.ts";
import { concatBytes } from "../../../lib/shared/bytes.ts";

/** TLS record content types (RFC 8446 section 5.1). */
export const RECORD = { changeCipherSpec: 20, alert: 21, handshake: 22, applicationData: 23 };

export interface CountingServer {
  /** The relay's port: connect here. */
  readonly port: number;
  /** Decrypted bytes the HTTPS server received over all connections. */
  decryptedBytes(): number;
  /** Authorization headers of the requests the server saw, in order. */
  readonly authorizations: (string | undefined)[];
  /** Content type of every TLS record each client sent, one array per TCP connection. */
  clientRecordTypes(): number[][];
  /**
   * Resolves once the HTTPS server has hung up on every connection relayed so far, which it does
   * only after decrypting all that arrived: from then on decryptedBytes() is final for them.
   */
  hungUp(): Promise<void>;
  close(): Promise<void>;
}

function recordTypes(stream: Uint8Array): number[] {
  const types: number[] = [];
  for (let at = 0; at + 5 <= stream.length; at += 5 + ((stream[at + 3]! << 8) | stream[at + 4]!)) {
    types.push(stream[at]!);
  }
  return types;
}

async function listen(server: { listen(port: number, host: string): unknown }): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server as never, "listening");
  return ((server as unknown as { address(): AddressInfo }).address() as AddressInfo).port;
}

/** `answer: false` reads requests but never replies (for deadline tests). */
export async function startCountingServer(
  identity: ClusterIdentity,
  answer = true,
): Promise<CountingServer> {
  let decrypted = 0;
  const authorizations: (string | undefined)[] = [];
  const https = createHttpsServer({ key: identity.keyPem, cert: identity.certPem }, (req, res) => {
    authorizations.push(req.headers.authorization);
    req.resume();
    if (answer) req.on("end", () => res.end(`${req.method} ${req.url}`));
  });
  https.on("secureConnection", (socket: TLSSocket) => {
    socket.on("data", (chunk: Uint8Array) => {
      decrypted += chunk.length;
    });
  });
  const httpsPort = await listen(https);

  const wires: Uint8Array[][] = [];
  const hangUps: Promise<unknown>[] = [];
  const sockets: Socket[] = [];
  const relay = createTcpServer((client) => {
    const server = connect(httpsPort, "127.0.0.1");
    const wire: Uint8Array[] = [];
    wires.push(wire);
    sockets.push(client, server);
    client.on("data", (chunk: Uint8Array) => wire.push(chunk));
    client.pipe(server);
    server.pipe(client);
    client.on("error", () => server.destroy());
    server.on("error", () => client.destroy());
    // Once the client is gone, pipe() stops reading the server side; keep draining it so the
    // server's hang-up is seen. ('close' follows an 'error' too, which once() would turn into a rejection.)
    client.on("close", () => server.resume());
    hangUps.push(new Promise((resolve) => server.on("close", resolve)));
  });
  const port = await listen(relay);

  return {
    port,
    decryptedBytes: () => decrypted,
    authorizations,
    clientRecordTypes: () => wires.map((wire) => recordTypes(concatBytes(wire))),
    hungUp: async () => {
      await Promise.all(hangUps);
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      https.closeAllConnections();
      relay.close();
      https.close();
      await Promise.all([once(relay, "close"), once(https, "close")]);
    },
  };
}
