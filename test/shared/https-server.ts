/**
 * A test-local HTTPS server with an identity of the test's choosing, serving a fetch handler:
 * a member's public API in a unit test, or an impostor at a member's address. It records the
 * Authorization header of every request, so a test can show that none carried a credential.
 */
import { once } from "node:events";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { getRequestListener } from "@hono/node-server";
import type { ClusterIdentity } from "../../lib/identity/x509.ts";

export interface TestHttpsServer {
  /** Each request's Authorization header, undefined where there was none, in arrival order. */
  readonly authorizations: (string | undefined)[];
  readonly port: number;
  close(): Promise<void>;
}

export async function serveHttps(
  identity: ClusterIdentity,
  fetch: (request: Request) => Response | Promise<Response>,
  where: { readonly host: string; readonly port?: number } = { host: "127.0.0.1" },
): Promise<TestHttpsServer> {
  const authorizations: (string | undefined)[] = [];
  const server = createServer(
    { cert: identity.certPem, key: identity.keyPem },
    getRequestListener((request) => {
      authorizations.push(request.headers.get("authorization") ?? undefined);
      return fetch(request);
    }),
  ).listen(where.port ?? 0, where.host);
  await once(server, "listening");
  return {
    authorizations,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
