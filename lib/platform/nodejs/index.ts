/**
 * Node adapter: single-executable assets through node:sea, HTTP(S) through @hono/node-server
 * with the protocol limits of ServerLimits (header size, slow clients, connections per source).
 * Owns: everything Node-specific. Must not touch: Deno APIs, cluster logic.
 */
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Server as NetServer, Socket } from "node:net";
import type { TLSSocket, Server as TlsServer } from "node:tls";
import { fileURLToPath } from "node:url";
import { type Http2Bindings, type HttpBindings, serve } from "@hono/node-server";
import { isPrivilegedPort } from "../../shared/reserved-ports.ts";
import { sourceKey } from "../../shared/source-key.ts";
import {
  type AssetName,
  type ClientInfo,
  type Platform,
  SERVER_LIMITS,
  type ServeOptions,
  type Server,
} from "../types.ts";
import { reservedDialler } from "./reserved-dial.ts";

interface SeaModule {
  isSea(): boolean;
  getRawAsset(name: string): ArrayBuffer;
}

// node:sea exists only in Node >= 20.12; getBuiltinModule keeps the bundle free of a static import.
const sea = (
  process as unknown as { getBuiltinModule?: (id: string) => unknown }
).getBuiltinModule?.("node:sea") as SeaModule | undefined;
const inSea = sea?.isSea() ?? false;

function embeddedAsset(name: AssetName): Uint8Array | undefined {
  if (!inSea || !sea) return undefined;
  try {
    return new Uint8Array(sea.getRawAsset(name));
  } catch {
    return undefined;
  }
}

function sourceAssetPath(name: AssetName): string | undefined {
  if (inSea) return undefined;
  return fileURLToPath(new URL(`../../../vendor/cache/bin/${name}`, import.meta.url));
}

function selfCommand(): string[] {
  if (inSea) return [process.execPath];
  // Running from source through tsx: keep the loader and the entry script.
  return [process.execPath, ...process.execArgv, process.argv[1]];
}

/**
 * Closes a source's connections beyond `cap` as they arrive; an IPv6 source counts per /64
 * (sourceKey), since one host can take any address in its /64. With TLS the count is of TCP
 * connections, before any handshake, so an over-limit source costs no cryptography. Connections
 * from a privileged source port (below 1024: a member's agent, lib/shared/reserved-ports.ts) have
 * a cap of their own, so a local user on a member's host cannot use up its agent's; the port
 * picks the count only, authentication is the handler's as before.
 */
export function capConnectionsPerSource(server: Pick<NetServer, "on">, cap: number): void {
  const open = new Map<string, number>();
  server.on("connection", (socket: Socket) => {
    const pool = isPrivilegedPort(socket.remotePort) ? "privileged" : "unprivileged";
    const source = `${pool} ${sourceKey(socket.remoteAddress ?? "")}`;
    const count = (open.get(source) ?? 0) + 1;
    if (count > cap) {
      socket.destroy();
      return;
    }
    open.set(source, count);
    socket.once("close", () => {
      const left = (open.get(source) ?? 1) - 1;
      if (left === 0) open.delete(source);
      else open.set(source, left);
    });
  });
}

/**
 * The certificate each TLS client showed, read once per connection: every request on a
 * kept-alive connection carries the same object, so the handler can hash it once (member.ts).
 * Renegotiation, which could show another certificate on the same connection, is refused.
 */
type ShownCertificates = WeakMap<TLSSocket, Uint8Array | undefined>;

function shownCertificate(socket: TLSSocket, shown: ShownCertificates): Uint8Array | undefined {
  if (shown.has(socket)) return shown.get(socket);
  socket.disableRenegotiation();
  const raw = socket.getPeerCertificate()?.raw;
  const certificate = raw ? new Uint8Array(raw) : undefined;
  shown.set(socket, certificate);
  return certificate;
}

/** The socket's peer address and, over TLS, the certificate the client showed. */
function clientOf(socket: Socket | TLSSocket, shown: ShownCertificates): ClientInfo {
  const certificate = "getPeerCertificate" in socket ? shownCertificate(socket, shown) : undefined;
  return {
    remoteAddress: socket.remoteAddress ?? "",
    ...(certificate ? { clientCertificate: certificate } : {}),
  };
}

function serveHttp(options: ServeOptions): Promise<Server> {
  const limits = options.limits ?? SERVER_LIMITS;
  const serverOptions = {
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    // How often Node looks for requests past those timeouts (its default is 30 s).
    connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs),
  };
  const shown: ShownCertificates = new WeakMap();
  return new Promise((resolve, reject) => {
    const server = serve(
      {
        fetch: (request: Request, env: HttpBindings | Http2Bindings) =>
          options.fetch(request, clientOf(env.incoming.socket as Socket | TLSSocket, shown)),
        hostname: options.hostname,
        port: options.port,
        ...(options.tls
          ? {
              createServer: createHttpsServer,
              serverOptions: {
                ...serverOptions,
                // A client that never completes its handshake is a slow client too.
                handshakeTimeout: limits.headersTimeoutMs,
                cert: options.tls.cert,
                key: options.tls.key,
                ...(options.tls.requestClientCert
                  ? { requestCert: true, rejectUnauthorized: false }
                  : {}),
              },
            }
          : { serverOptions }),
      },
      (info: AddressInfo) =>
        resolve({
          port: info.port,
          replaceCertificate(cert, key) {
            if (!options.tls) throw new Error("this server does not speak TLS");
            (server as unknown as TlsServer).setSecureContext({ cert, key });
          },
          close: () =>
            new Promise<void>((done) => {
              server.close(() => done());
              (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
            }),
        }),
    );
    const { refuseSource } = options;
    if (refuseSource) {
      server.on("connection", (socket: Socket) => {
        if (refuseSource(socket.remoteAddress ?? "") !== undefined) socket.destroy();
      });
    }
    capConnectionsPerSource(server as unknown as NetServer, limits.connectionsPerSource);
    server.once("error", reject);
  });
}

export const nodePlatform: Platform = {
  runtime: "node",
  embeddedAsset,
  sourceAssetPath,
  selfCommand,
  serve: serveHttp,
  reservedDialler: (warn) => reservedDialler(warn),
};
