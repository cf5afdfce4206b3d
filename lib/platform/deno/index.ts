/**
 * Deno adapter: runs from source (`deno run -A main.ts`). A TLS server runs on node:https (the
 * Node adapter, with all of ServerLimits), which Deno also provides: Deno.serve can neither ask
 * a client for its certificate nor change its own certificate while it listens, and Mill's
 * servers need both (internal routes, `mill token rotate`). Plain HTTP is served by Deno.serve,
 * which offers no header-size, timeout or per-connection settings: of ServerLimits only what
 * Deno enforces by itself applies there (see lib/platform/types.ts). Node-to-node connections
 * leave from a reserved port through Deno's node:net (nodejs/reserved-dial.ts), which binds one.
 * Owns: everything Deno-specific. Must not touch: Node-only APIs, cluster logic.
 */
import { fileURLToPath } from "node:url";
import { nodePlatform } from "../nodejs/index.ts";
import { NODE_PORT_ERRORS, reservedDialler } from "../nodejs/reserved-dial.ts";
import type { AssetName, Platform, ServeOptions, Server } from "../types.ts";

// Only the slice of the Deno namespace this adapter uses, so `tsc` (which has no Deno types) checks it too.
interface DenoApi {
  execPath(): string;
  mainModule: string;
  serve(
    options: {
      hostname: string;
      port: number;
      onListen?: (address: { port: number }) => void;
    },
    handler: (
      request: Request,
      info: { remoteAddr: { hostname?: string } },
    ) => Response | Promise<Response>,
  ): { shutdown(): Promise<void>; finished: Promise<void> };
}

const deno = (globalThis as unknown as { Deno: DenoApi }).Deno;

function sourceAssetPath(name: AssetName): string {
  return fileURLToPath(new URL(`../../../vendor/cache/bin/${name}`, import.meta.url));
}

function serve(options: ServeOptions): Promise<Server> {
  // Deno.serve cannot refuse a connection by its source before the request, either.
  if (options.tls || options.refuseSource) return nodePlatform.serve(options);
  return new Promise((resolve, reject) => {
    try {
      const server = deno.serve(
        {
          hostname: options.hostname,
          port: options.port,
          onListen: ({ port }) =>
            resolve({
              port,
              replaceCertificate() {
                throw new Error("this server does not speak TLS");
              },
              close: () => server.shutdown(),
            }),
        },
        (request, info) =>
          options.fetch(request, { remoteAddress: info.remoteAddr.hostname ?? "" }),
      );
    } catch (error) {
      reject(error);
    }
  });
}

/**
 * Deno's node:net binds a local port as Node's does (EACCES below 1024 without the right), but
 * reports a port already used to the same peer as EINVAL where Node says EADDRNOTAVAIL.
 */
export const DENO_PORT_ERRORS = {
  ...NODE_PORT_ERRORS,
  taken: [...NODE_PORT_ERRORS.taken, "EINVAL"],
};

export const denoPlatform: Platform = {
  runtime: "deno",
  embeddedAsset: () => undefined,
  sourceAssetPath,
  selfCommand: () => [deno.execPath(), "run", "-A", fileURLToPath(deno.mainModule)],
  serve,
  reservedDialler: (warn) => reservedDialler(warn, DENO_PORT_ERRORS),
};
