/**
 * Where a node serves its two APIs. The public API always takes the advertise address over TLS.
 * Member secrets must never travel in clear: without a mesh the internal routes share the public
 * TLS port; with one they are served on the mesh address only, inside WireGuard, and a connection
 * whose source is outside the mesh (it reached the mesh address some other way) is closed on
 * arrival.
 * Owns: the listening sockets and the failed-auth guard in front of them. Must not touch: the
 * routes (lib/api), what the node does with requests.
 */

import type { ApiDeps, TlsIdentity } from "../api/deps.ts";
import { guardAuthFailures, type Handler } from "../api/guard.ts";
import { createInternalApi } from "../api/internal.ts";
import { createPublicApi } from "../api/public.ts";
import { AuthBackoff } from "../api/ratelimit.ts";
import { platform } from "../platform/index.ts";
import type { ClientInfo, Server } from "../platform/types.ts";
import { LogThrottle } from "../raft/transport/admission.ts";
import type { Log } from "../shared/log.ts";
import type { NodeConfig, NodeSecrets } from "./config.ts";

export const INTERNAL_PREFIX = "/v1/internal/";

export interface ApiServersOptions {
  readonly config: NodeConfig;
  readonly secrets: Pick<NodeSecrets, "nodeCertPem" | "nodeKeyPem">;
  /** The cluster's public identity, which the current token pins (token-keeper.ts). */
  readonly publicIdentity: TlsIdentity;
  /** The mesh address with `--mesh wireguard`, else the advertise address. */
  readonly internalAddress: string;
  readonly deps: ApiDeps;
  readonly log: Log;
  /** With the mesh: why a source did not come through it (the internal API refuses those). */
  readonly refuseSource?: (address: string) => string | undefined;
}

export interface ApiServers {
  /** The public port shows `identity` in every new handshake (after `mill token rotate`). */
  servePublicIdentity(identity: TlsIdentity): void;
  close(): Promise<void>;
}

/** Starts the node's servers; resolves once they listen. */
export async function serveApis(options: ApiServersOptions): Promise<ApiServers> {
  const { config, secrets, publicIdentity, internalAddress, deps, log, refuseSource } = options;
  const publicApi = createPublicApi(deps);
  const internalApi = createInternalApi(deps);
  const isInternal = (request: Request) =>
    new URL(request.url).pathname.startsWith(INTERNAL_PREFIX);
  // One back-off for both ports: a source that keeps failing authentication is refused on both.
  const backoff = new AuthBackoff();
  const guarded = (handler: Handler) =>
    guardAuthFailures(handler, { backoff, now: Date.now, warn: (line) => log.warn(line) });
  // The internal routes judge the client certificate (member.ts), so it travels with the request.
  const internal = (client: ClientInfo) => (request: Request) =>
    internalApi.fetch(request, { clientCertificate: client.clientCertificate });
  const publicServer = await platform.serve({
    hostname: config.advertise,
    port: config.apiPort,
    tls: {
      cert: publicIdentity.certPem,
      key: publicIdentity.keyPem,
      requestClientCert: config.mesh === "none",
    },
    fetch: (request, client) =>
      guarded((r) =>
        isInternal(r) && config.mesh === "none" ? internal(client)(r) : publicApi.fetch(r),
      )(request, client.remoteAddress),
  });
  const servers: Server[] = [publicServer];
  if (config.mesh === "wireguard") {
    servers.push(
      await platform.serve({
        hostname: internalAddress,
        port: config.apiPort,
        // Members show their node certificate and expect this node's, not the cluster's.
        tls: { cert: secrets.nodeCertPem, key: secrets.nodeKeyPem, requestClientCert: true },
        ...(refuseSource ? { refuseSource: loggedRefusals(refuseSource, log) } : {}),
        fetch: (request, client) => guarded(internal(client))(request, client.remoteAddress),
      }),
    );
  }
  return {
    servePublicIdentity: (identity) =>
      publicServer.replaceCertificate(identity.certPem, identity.keyPem),
    close: async () => {
      await Promise.all(servers.map((server) => server.close()));
    },
  };
}

/** `refuseSource` that also logs its refusals: one line per source a minute, however many come. */
function loggedRefusals(
  refuseSource: (address: string) => string | undefined,
  log: Log,
): (address: string) => string | undefined {
  const throttle = new LogThrottle();
  return (address) => {
    const refusal = refuseSource(address);
    if (refusal !== undefined && throttle.allow(address, Date.now())) {
      log.warn(`internal API: refusing a connection from ${address}: ${refusal}`);
    }
    return refusal;
  };
}
