/**
 * Deno adapter: runs from source (`deno run -A main.ts`), serves HTTP(S) with Deno.serve.
 * Deno.serve offers no header-size, timeout or per-connection settings: of ServerLimits only
 * what Deno enforces by itself applies here (see lib/platform/types.ts). A server that asks for
 * client certificates runs on node:https (the Node adapter), which Deno also provides.
 * Owns: everything Deno-specific. Must not touch: Node-only APIs, cluster logic.
 */
import { fileURLToPath } from "node:url";
import { nodePlatform } from "../nodejs/index.ts";
import type { AssetName, Platform, ServeOptions, Server } from "../types.ts";

// Only the slice of the Deno namespace this adapter uses, so `tsc` (which has no Deno types) checks it too.
interface DenoApi {
  execPath(): string;
  mainModule: string;
  serve(
    options: {
      hostname: string;
      port: number;
      cert?: string;
      key?: string;
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
  // Deno.serve cannot ask a client for its certificate; node:https under Deno can.
  if (options.tls?.requestClientCert) return nodePlatform.serve(options);
  return new Promise((resolve, reject) => {
    try {
      const server = deno.serve(
        {
          hostname: options.hostname,
          port: options.port,
          ...(options.tls ? { cert: options.tls.cert, key: options.tls.key } : {}),
          onListen: ({ port }) => resolve({ port, close: () => server.shutdown() }),
        },
        (request, info) =>
          options.fetch(request, { remoteAddress: info.remoteAddr.hostname ?? "" }),
      );
    } catch (error) {
      reject(error);
    }
  });
}

export const denoPlatform: Platform = {
  runtime: "deno",
  embeddedAsset: () => undefined,
  sourceAssetPath,
  selfCommand: () => [deno.execPath(), "run", "-A", fileURLToPath(deno.mainModule)],
  serve,
};
