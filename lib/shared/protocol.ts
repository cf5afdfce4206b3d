/**
 * The version of the protocol nodes speak to each other: the Raft transport's hello, the internal
 * API's header and the join request and answer carry it. Nodes of the same major version talk
 * whatever their minor versions; a different major is refused, with a log line naming both
 * versions. What a newer minor adds to the replicated state waits until the whole cluster speaks
 * it (the cluster protocol, lib/cluster/protocol-gate.ts); once the cluster committed a minor, a
 * peer below it is refused too. A leaf of lib/shared.
 * Owns: that one constant and the rules. Must not touch: how it travels (each channel's own file).
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

/**
 * 1.1: a rejected append may say that the follower lost its log (`logLost`).
 * 1.2: the committed cluster protocol, and the commands it holds back (protocol-gate.ts).
 */
export const PROTOCOL_VERSION: ProtocolVersion =
  typeof __MILL_PROTOCOL_VARIANT__ === "undefined"
    ? { major: 1, minor: 2 }
    : __MILL_PROTOCOL_VARIANT__;

/** The first versioned protocol: what a cluster that never committed another speaks. */
export const BASELINE_PROTOCOL: ProtocolVersion = { major: 1, minor: 0 };

/** What a join request or answer without a version speaks: nodes from before joins carried one. */
export const UNVERSIONED_JOIN: ProtocolVersion = BASELINE_PROTOCOL;

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

/**
 * Why a node speaking `ours` refuses a peer speaking `theirs`, in a cluster that committed the
 * protocol `cluster`, as the end of a line naming the versions; undefined when it takes the peer.
 * Another major is refused always, a minor below the committed cluster protocol too (the peer
 * could not apply what the cluster now commits).
 */
export function protocolRefusal(
  theirs: ProtocolVersion,
  ours: ProtocolVersion,
  cluster: ProtocolVersion,
): string | undefined {
  const versions = `speaks protocol ${formatProtocol(theirs)}, this node ${formatProtocol(ours)}`;
  if (!compatibleProtocols(theirs, ours)) return versions;
  if (theirs.major === cluster.major && theirs.minor < cluster.minor) {
    return `${versions}, and the cluster's protocol is ${formatProtocol(cluster)}`;
  }
  return undefined;
}
