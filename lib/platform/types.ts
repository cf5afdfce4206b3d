/**
 * The small interface every runtime adapter implements (one folder per runtime, like hono's adapters).
 * Owns: the shape of what differs between Node and Deno. Must not touch: cluster logic.
 */

/** Executables that the release build embeds (see build/build.ts). */
export type AssetName = "wireguard-go" | "mill-netif";

export interface ServeOptions {
  readonly fetch: (request: Request) => Response | Promise<Response>;
  readonly hostname: string;
  readonly port: number;
  /** PEM strings; when given the server speaks TLS only. */
  readonly tls?: { readonly cert: string; readonly key: string };
}

export interface Server {
  /** The bound port (useful when 0 was asked for). */
  readonly port: number;
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
}
