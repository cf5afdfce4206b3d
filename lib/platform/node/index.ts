/**
 * Node adapter: single-executable assets through node:sea, HTTP(S) through @hono/node-server.
 * Owns: everything Node-specific. Must not touch: Deno APIs, cluster logic.
 */
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { serve } from "@hono/node-server";
import type { AssetName, Platform, ServeOptions, Server } from "../types.ts";

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
  return fileURLToPath(new URL(`../../../vendor/bin/${name}`, import.meta.url));
}

function selfCommand(): string[] {
  if (inSea) return [process.execPath];
  // Running from source through tsx: keep the loader and the entry script.
  return [process.execPath, ...process.execArgv, process.argv[1]];
}

function serveHttp(options: ServeOptions): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = serve(
      {
        fetch: options.fetch,
        hostname: options.hostname,
        port: options.port,
        ...(options.tls
          ? {
              createServer: createHttpsServer,
              serverOptions: { cert: options.tls.cert, key: options.tls.key },
            }
          : {}),
      },
      (info: AddressInfo) =>
        resolve({
          port: info.port,
          close: () =>
            new Promise<void>((done) => {
              server.close(() => done());
              (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
            }),
        }),
    );
    server.once("error", reject);
  });
}

export const nodePlatform: Platform = {
  runtime: "node",
  embeddedAsset,
  sourceAssetPath,
  selfCommand,
  serve: serveHttp,
};
