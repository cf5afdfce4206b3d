/**
 * The version of the protocol nodes speak to each other: the Raft transport's hello, the internal
 * API's header and the join request and answer carry it. Nodes of the same major version talk whatever their minor
 * versions (a minor adds only what older nodes can ignore); a different major is refused, with a
 * log line naming both versions. A leaf of lib/shared.
 * Owns: that one constant and the rule. Must not touch: how it travels (each channel's own file).
 */

export interface ProtocolVersion {
  readonly major: number;
  readonly minor: number;
}

/**
 * Defined only in the executables the version-skew tests build (build/executable.ts `variant`),
 * which must speak another version than this source; a release build leaves it undefined.
 */
declare const __MILL_PROTOCOL_VARIANT__: ProtocolVersion | undefined;

/** 1.1: a rejected append may say that the follower lost its log (`logLost`). */
export const PROTOCOL_VERSION: ProtocolVersion =
  typeof __MILL_PROTOCOL_VARIANT__ === "undefined"
    ? { major: 1, minor: 1 }
    : __MILL_PROTOCOL_VARIANT__;

/** What a join request or answer without a version speaks: nodes from before joins carried one. */
export const UNVERSIONED_JOIN: ProtocolVersion = { major: 1, minor: 0 };

/** The largest major or minor number: the Raft hello carries each in 16 bits. */
export const MAX_PROTOCOL_NUMBER = 0xffff;

/** The header that carries the version on the internal API, as "major.minor". */
export const PROTOCOL_HEADER = "x-mill-protocol";

export const formatProtocol = (version: ProtocolVersion) => `${version.major}.${version.minor}`;

/** "1.0" back into a version; undefined for anything else. */
export function parseProtocol(text: string | undefined): ProtocolVersion | undefined {
  const match = /^(\d{1,5})\.(\d{1,5})$/.exec(text ?? "");
  return match ? { major: Number(match[1]), minor: Number(match[2]) } : undefined;
}

export const compatibleProtocols = (a: ProtocolVersion, b: ProtocolVersion) => a.major === b.major;
