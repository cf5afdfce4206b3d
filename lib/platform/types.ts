/**
 * The small interface every runtime adapter implements (one folder per runtime, like hono's adapters).
 * Owns: the shape of what differs between Node and Deno. Must not touch: cluster logic.
 */

import type { Dial } from "../shared/reserved-ports.ts";

/** Executables that the release build embeds (see build/build.ts). */
export type AssetName = "wireguard-go" | "mill-netif";

/** Who sent a request, as the socket saw it. */
export interface ClientInfo {
  /** The peer's IP address ("" when the runtime cannot tell). */
  readonly remoteAddress: string;
  /** The DER certificate the client showed in the TLS handshake, when it was asked for one. */
  readonly clientCertificate?: Uint8Array;
}

/**
 * Protocol-level limits the server enforces before the handler sees a request. The Node adapter
 * applies all of them; Deno.serve has no setting for the header size, the timeouts or a
 * per-source connection cap, so the Deno adapter relies on Deno's own defaults for those.
 */
export interface ServerLimits {
  /** Larger request heads are refused with 431. */
  readonly maxHeaderBytes: number;
  /** A client must finish sending its request head within this (408 after). */
  readonly headersTimeoutMs: number;
  /** A client must finish sending its whole request within this (408 after). */
  readonly requestTimeoutMs: number;
  /**
   * Open connections allowed per source address, counted apart for privileged source ports
   * (below 1024, which only root binds: a member's agent) and the others; the next is closed at
   * once.
   */
  readonly connectionsPerSource: number;
}

export const SERVER_LIMITS: ServerLimits = {
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 10_000,
  connectionsPerSource: 64,
};

export interface ServeOptions {
  readonly fetch: (request: Request, client: ClientInfo) => Response | Promise<Response>;
  readonly hostname: string;
  readonly port: number;
  /**
   * PEM strings; when given the server speaks TLS only. With `requestClientCert` it also asks
   * each client for a certificate (never requiring one, never checking it against a CA): the
   * handler judges it (ClientInfo.clientCertificate).
   */
  readonly tls?: {
    readonly cert: string;
    readonly key: string;
    readonly requestClientCert?: boolean;
  };
  /**
   * Why a connection from this address is closed on arrival, before TLS, or undefined to take it
   * (the caller logs its refusals). With the mesh, the internal API refuses sources outside it.
   */
  readonly refuseSource?: (address: string) => string | undefined;
  /** SERVER_LIMITS unless given (tests use short timeouts). */
  readonly limits?: ServerLimits;
}

export interface Server {
  /** The bound port (useful when 0 was asked for). */
  readonly port: number;
  /**
   * A server started with `tls` shows this certificate and key in every handshake from now on,
   * without closing its socket; connections already open keep the one they began with. Throws
   * on a server without TLS. The caller makes sure the key fits the certificate
   * (lib/identity/rotation.ts): Node refuses one that does not, Deno takes it.
   */
  replaceCertificate(cert: string, key: string): void;
  close(): Promise<void>;
}

export interface Platform {
  readonly runtime: "node" | "deno";
  /** Bytes of an executable embedded in this build, or undefined when running from source. */
  embeddedAsset(name: AssetName): Uint8Array | undefined;
  /** Where a source checkout keeps the executables the build vendors. */
  sourceAssetPath(name: AssetName): string | undefined;
  /** argv that starts this same program again, e.g. to detach a node into the background. */
  selfCommand(): string[];
  serve(options: ServeOptions): Promise<Server>;
  /**
   * A Dial for node-to-node connections that leave from a reserved port below 1024
   * (lib/shared/reserved-ports.ts), or from an ordinary port where this process may not bind one;
   * `warn` hears that once.
   */
  reservedDialler(warn: (line: string) => void): Dial;
}
