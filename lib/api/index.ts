/**
 * The API room's public face: the two Hono apps, their dependency contract and the wire types.
 * Owns: the export list. Must not touch: anything else.
 */

export type { ApiDeps, ApiRaft, TlsIdentity } from "./deps.ts";
export { createInternalApi, type MemberEnv } from "./internal.ts";
export { createPublicApi } from "./public.ts";
export * from "./wire.ts";
