/**
 * What a joining node sends, declared once as schemas (lib/shared/schema.ts), and the rules for
 * its fields, with errors that name the field and say what to do. Owns: the rules for names,
 * addresses, ports, resources, keys and hashes; the shapes of a registration, of a join request
 * and of its withdrawal, and of a node's question whether it was removed (with the statement a
 * member signs to answer it). Must not touch: I/O, state changes. commands.ts declares NodeRegister
 * with the same registration, so a command the API would refuse is also refused on apply.
 */

import { isIPv4, isIPv6 } from "node:net";
import { parsePublicKey } from "../mesh/keys.ts";
import { errorMessage } from "../shared/errors.ts";
import { type Checked, isDnsLabel, type Rule } from "../shared/fields.ts";
import type { NodeResources } from "../shared/node-facts.ts";
import { MAX_PROTOCOL_NUMBER, type ProtocolVersion, UNVERSIONED_JOIN } from "../shared/protocol.ts";
import { type Infer, leaf, object, optional, type Schema } from "../shared/schema.ts";

const SHA256_HEX = /^[0-9a-f]{64}$/;
const FINGERPRINT = /^[a-z2-7]{32}$/;
const REQUEST_ID = /^[A-Za-z0-9_-]{8,64}$/;
const MESH_MODES = ["wireguard", "none"] as const;

/** How node-to-node traffic travels; chosen at init, every node must run the same. */
export type MeshMode = (typeof MESH_MODES)[number];

export const checkName: Rule = (value, field) => {
  if (typeof value !== "string") return `${field} is missing: give the node a name (--name)`;
  if (isDnsLabel(value)) return undefined;
  const hint = value.toLowerCase().replace(/[^a-z0-9-]+/g, "-");
  return `${field} ${JSON.stringify(value.slice(0, 80))} is not a DNS label: use 1-63 lowercase letters, digits and inner hyphens${isDnsLabel(hint) ? `, e.g. ${hint}` : ""} (--name)`;
};

export const checkIp: Rule = (value, field) => {
  if (typeof value !== "string" || !(isIPv4(value) || isIPv6(value))) {
    return `${field} ${JSON.stringify(String(value).slice(0, 80))} is not an IP address: pass an IPv4 or IPv6 literal this node is reachable on (--advertise)`;
  }
  if (value.includes("%")) {
    return `${field} ${value} carries a zone index: pass an address that routes without one (--advertise)`;
  }
  if (isUnspecified(value)) {
    return `${field} ${value} is the unspecified address: pass the address other nodes reach this node on (--advertise)`;
  }
  return undefined;
};

export const checkPort: Rule = (value, field) =>
  Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 65535
    ? undefined
    : `${field} ${JSON.stringify(value)} is not a port: use an integer from 1 to 65535`;

/** More than any one machine has: a claim beyond it is not a real host's. */
export const MAX_CORES = 4096;
export const MAX_MEMORY_BYTES = 64 * 1024 ** 4;

export const checkCores: Rule = (value, field) =>
  Number.isInteger(value) && (value as number) > 0 && (value as number) <= MAX_CORES
    ? undefined
    : `${field} ${JSON.stringify(value)} is not a core count: use a whole number from 1 to ${MAX_CORES}`;

export const checkMemory: Rule = (value, field) =>
  Number.isSafeInteger(value) && (value as number) > 0 && (value as number) <= MAX_MEMORY_BYTES
    ? undefined
    : `${field} ${JSON.stringify(value)} is not a memory size: use a whole number of bytes from 1 to ${MAX_MEMORY_BYTES} (64 TiB)`;

export const checkPublicKey: Rule = (value, field) => {
  try {
    parsePublicKey(value as string);
    return undefined;
  } catch (error) {
    return `${field}: ${errorMessage(error)}`;
  }
};

export const checkSha256Hex: Rule = (value, field) =>
  typeof value === "string" && SHA256_HEX.test(value)
    ? undefined
    : `${field} is not a sha256 digest: send 64 lowercase hex digits`;

export const checkNodeKey: Rule = (value, field) =>
  typeof value === "string" && FINGERPRINT.test(value)
    ? undefined
    : `${field} is not a node key fingerprint: send the 32 base32 characters of the node certificate's fingerprint`;

export const checkCertificateFingerprint: Rule = (value, field) =>
  typeof value === "string" && FINGERPRINT.test(value)
    ? undefined
    : `${field} is not a certificate fingerprint: send the 32 base32 characters a token carries after its dot`;

export const checkRequestId: Rule = (value, field) =>
  typeof value === "string" && REQUEST_ID.test(value)
    ? undefined
    : `${field} is not a request id: send 8-64 letters, digits, '-' or '_', the same on every retry`;

/** A node id a joiner got back from /v1/join. */
export const checkNodeId: Rule = (value, field) =>
  Number.isSafeInteger(value) && (value as number) > 0
    ? undefined
    : `${field} is not a node id: send the id /v1/join answered with`;

export const checkVersion: Rule = (value, field) =>
  typeof value === "string" && /^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$/.test(value)
    ? undefined
    : `${field} is not a version: expected up to 64 letters, digits, '.', '+' or '-', e.g. 0.1.0`;

export const checkMesh: Rule = (value, field) =>
  MESH_MODES.includes(value as MeshMode)
    ? undefined
    : `${field} ${JSON.stringify(value)} is not a mesh mode: use "wireguard" or "none" (--mesh)`;

const checkProtocolNumber: Rule = (value, field) =>
  Number.isInteger(value) && (value as number) >= 0 && (value as number) <= MAX_PROTOCOL_NUMBER
    ? undefined
    : `${field} ${JSON.stringify(value)} is not a protocol version number: send an integer from 0 to ${MAX_PROTOCOL_NUMBER}`;

/** A protocol version as the join exchange carries it (lib/shared/protocol.ts). */
export const protocolVersion = object({
  major: leaf<number>(checkProtocolNumber),
  minor: leaf<number>(checkProtocolNumber),
});

/** The version a join request or answer carries in `protocol` (absent: UNVERSIONED_JOIN), checked. */
export const joinProtocol = (value: unknown): Checked<ProtocolVersion> =>
  protocolVersion.parse(value ?? UNVERSIONED_JOIN, "protocol");

/** What a node offers, bounded: a registration's claim and a heartbeat's measurement alike. */
export const nodeResources: Schema<NodeResources> = object({
  cores: leaf<number>(checkCores),
  memoryBytes: leaf<number>(checkMemory),
});

/** Resources a peer sent, checked against the bounds; undefined when missing or out of them. */
export function parseResources(raw: unknown): NodeResources | undefined {
  const checked = nodeResources.parse(raw, "resources");
  return checked.ok ? checked.value : undefined;
}

/** What a node brings when it registers; the latest registration wins on a rejoin. */
export const nodeRegistration = object({
  name: leaf<string>(checkName),
  /** IP literal other nodes and clients reach this node on. */
  advertise: leaf<string>(checkIp),
  apiPort: leaf<number>(checkPort),
  raftPort: leaf<number>(checkPort),
  wgPort: leaf<number>(checkPort),
  /** base64 x25519 public key. */
  wgPublicKey: leaf<string>(checkPublicKey),
  /** The node's claim, provisional: its own heartbeats replace it (the watchdog commits them). */
  resources: nodeResources,
  /** sha256 hex of the secret this node authenticates with on the internal API (member.ts). */
  memberSecretHash: leaf<string>(checkSha256Hex),
  /**
   * Fingerprint of the node's own TLS certificate (lib/identity/node-key.ts), whose key signs its
   * node-to-node connections. Absent only in registrations logged before nodes had keys; a join
   * must carry it.
   */
  nodeKey: optional(leaf<string>(checkNodeKey)),
  /** The Mill version the node runs (package.json's); absent in registrations logged before. */
  version: optional(leaf<string>(checkVersion)),
});

export type NodeRegistration = Infer<typeof nodeRegistration>;

const CERTIFICATE_PEM =
  /^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n?$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

const checkCertificate: Rule = (value, field) =>
  typeof value === "string" && value.length <= 4096 && CERTIFICATE_PEM.test(value)
    ? undefined
    : `${field} is not a PEM certificate: send the node's node.crt as it is`;

const checkSignature: Rule = (value, field) =>
  typeof value === "string" && value.length <= 200 && BASE64.test(value)
    ? undefined
    : `${field} is not a signature: send the base64 ECDSA signature of the registration`;

/** The body of POST /v1/join. */
const joinRequest = object({
  /** Chosen by the joiner, unique per attempt, repeated verbatim on retries. */
  requestId: leaf<string>(checkRequestId),
  ...nodeRegistration.shape,
  mesh: leaf<MeshMode>(checkMesh),
  /** The certificate whose fingerprint is `nodeKey`. */
  nodeCert: leaf<string>(checkCertificate),
  /** `registrationStatement` of this body, signed with the node key (lib/identity/node-key.ts). */
  signature: leaf<string>(checkSignature),
  /**
   * The protocol the joiner speaks; absent from joiners before joins carried one (1.0). Not part
   * of the registration: it is checked when the join arrives, and the record keeps `version`.
   */
  protocol: optional(protocolVersion),
});

export type JoinRequest = Infer<typeof joinRequest>;

/**
 * What a joiner signs with its node key: the request id and the whole registration, in the
 * schema's order. A signed join cannot be altered, and replaying it verbatim only repeats the
 * registration its key holder made.
 */
export function registrationStatement(join: Omit<JoinRequest, "signature">): string {
  return JSON.stringify(["mill-join-v1", join.requestId, nodeRegistration.pick(join), join.mesh]);
}

/** The body of POST /v1/join/withdraw: a joiner taking back a registration it made. */
export const joinWithdrawal = object({
  /** The id /v1/join answered with. */
  nodeId: leaf<number>(checkNodeId),
  /** The certificate whose fingerprint the registration holds as its nodeKey. */
  nodeCert: leaf<string>(checkCertificate),
  /** `withdrawalStatement` for the cluster and node, signed with the node key. */
  signature: leaf<string>(checkSignature),
});

export type JoinWithdrawal = Infer<typeof joinWithdrawal>;

/**
 * What a joiner signs to withdraw its registration: the cluster and its node id. Ids are never
 * reused, so a replay can only withdraw the same registration again.
 */
export function withdrawalStatement(clusterId: string, nodeId: number): string {
  return JSON.stringify(["mill-join-withdraw-v1", clusterId, nodeId]);
}

/** A nonce as a node asking whether it was removed sends it: 32 random bytes, base64url, unpadded. */
const REMOVAL_NONCE = /^[A-Za-z0-9_-]{43}$/;

/** The body of POST /v1/members/ID/removal: the asker's fresh nonce, which the answer signs. */
export const removalQuestion = object({
  nonce: leaf<string>((value, field) =>
    typeof value === "string" && REMOVAL_NONCE.test(value)
      ? undefined
      : `${field} is not a nonce: send 32 fresh random bytes as 43 base64url characters`,
  ),
});

/**
 * What member `signer` signs with its node key to answer whether node `subject` of the cluster
 * was removed. The asker rebuilds it from its own cluster id, its own id and the nonce it chose,
 * so an answer cannot be moved to another cluster, node or question, nor replayed.
 */
export function removalStatement(
  clusterId: string,
  subject: number,
  removed: boolean,
  nonce: string,
  signer: number,
): string {
  return JSON.stringify(["mill-removal-v1", clusterId, subject, removed, nonce, signer]);
}

/**
 * Validates a join body. `loopbackCluster` says every current member advertises a loopback
 * address (or there is none): only then may a joiner advertise one, for single-host development.
 */
export function validateJoinRequest(body: unknown, loopbackCluster: boolean): Checked<JoinRequest> {
  const checked = joinRequest.parse(body, "");
  if (checked.ok && checked.value.nodeKey === undefined) {
    return {
      ok: false,
      problem: {
        field: "nodeKey",
        error:
          "nodeKey is missing: the joining node must register its own key (run the same mill version as the cluster)",
      },
    };
  }
  if (!checked.ok || !isLoopback(checked.value.advertise) || loopbackCluster) return checked;
  return {
    ok: false,
    problem: {
      field: "advertise",
      error: `advertise ${checked.value.advertise} is a loopback address but the cluster's nodes are not: pass an address the other nodes can reach (--advertise)`,
    },
  };
}

/** 127.0.0.0/8, ::1 and IPv4-mapped loopback. */
export function isLoopback(ip: string): boolean {
  if (isIPv4(ip)) return ip.startsWith("127.");
  const groups = ipv6Groups(ip);
  if (!groups) return false;
  const mapped = ipv4Mapped(groups);
  if (mapped !== undefined) return mapped >>> 24 === 127;
  return groups.slice(0, 7).every((group) => group === 0) && groups[7] === 1;
}

function isUnspecified(ip: string): boolean {
  if (isIPv4(ip)) return ip === "0.0.0.0";
  const groups = ipv6Groups(ip);
  if (!groups) return false;
  return groups.every((group) => group === 0) || ipv4Mapped(groups) === 0;
}

function ipv4Mapped(groups: readonly number[]): number | undefined {
  const prefix = groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff;
  return prefix ? groups[6]! * 65536 + groups[7]! : undefined;
}

/** The eight 16-bit groups of an IPv6 literal (already checked by isIPv6), or undefined. */
function ipv6Groups(ip: string): number[] | undefined {
  if (!isIPv6(ip) || ip.includes("%")) return undefined;
  let text = ip;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split("::") as [string, string | undefined];
  const parse = (part: string) =>
    part === "" ? [] : part.split(":").map((g) => Number.parseInt(g, 16));
  const front = parse(head);
  if (tail === undefined) return front;
  const back = parse(tail);
  return [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
}
