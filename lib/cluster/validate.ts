/**
 * Input validation for what a joining node sends, field by field, with errors that name the field
 * and say what to do. Owns: the rules for names, addresses, ports, resources, keys and hashes.
 * Must not touch: I/O, state changes. commands.ts reuses the same field rules when it decodes a
 * command, so a command the API would refuse is also refused on apply.
 */

import { isIPv4, isIPv6 } from "node:net";
import { parsePublicKey } from "../mesh/keys.ts";
import { type Checked, checkFields, type FieldError, type Rule } from "../shared/fields.ts";
import type { MeshMode, NodeRegistration } from "./state.ts";

/** The body of POST /v1/join. `memberSecretHash`: see lib/api/member.ts. */
export interface JoinRequest extends NodeRegistration {
  /** Chosen by the joiner, unique per attempt, repeated verbatim on retries. */
  readonly requestId: string;
  readonly mesh: MeshMode;
}

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const REQUEST_ID = /^[A-Za-z0-9_-]{8,64}$/;

export const checkName: Rule = (value, field) => {
  if (typeof value !== "string") return `${field} is missing: give the node a name (--name)`;
  if (DNS_LABEL.test(value)) return undefined;
  const hint = value.toLowerCase().replace(/[^a-z0-9-]+/g, "-");
  return `${field} ${JSON.stringify(value.slice(0, 80))} is not a DNS label: use 1-63 lowercase letters, digits and inner hyphens${DNS_LABEL.test(hint) ? `, e.g. ${hint}` : ""} (--name)`;
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

export const checkCores: Rule = (value, field) =>
  Number.isInteger(value) && (value as number) > 0 && (value as number) <= 1_000_000
    ? undefined
    : `${field} ${JSON.stringify(value)} is not a core count: use a positive whole number`;

export const checkMemory: Rule = (value, field) =>
  Number.isSafeInteger(value) && (value as number) > 0
    ? undefined
    : `${field} ${JSON.stringify(value)} is not a memory size: use a positive whole number of bytes`;

export const checkPublicKey: Rule = (value, field) => {
  try {
    parsePublicKey(value as string);
    return undefined;
  } catch (error) {
    return `${field}: ${(error as Error).message}`;
  }
};

export const checkSha256Hex: Rule = (value, field) =>
  typeof value === "string" && SHA256_HEX.test(value)
    ? undefined
    : `${field} is not a sha256 digest: send 64 lowercase hex digits`;

export const checkRequestId: Rule = (value, field) =>
  typeof value === "string" && REQUEST_ID.test(value)
    ? undefined
    : `${field} is not a request id: send 8-64 letters, digits, '-' or '_', the same on every retry`;

export const checkMesh: Rule = (value, field) =>
  value === "wireguard" || value === "none"
    ? undefined
    : `${field} ${JSON.stringify(value)} is not a mesh mode: use "wireguard" or "none" (--mesh)`;

/** Rules for the fields of NodeRegistration except `resources` (see RESOURCE_RULES). */
export const REGISTRATION_RULES: Readonly<Record<string, Rule>> = {
  name: checkName,
  advertise: checkIp,
  apiPort: checkPort,
  raftPort: checkPort,
  wgPort: checkPort,
  wgPublicKey: checkPublicKey,
  memberSecretHash: checkSha256Hex,
};

export const RESOURCE_RULES: Readonly<Record<string, Rule>> = {
  cores: checkCores,
  memoryBytes: checkMemory,
};

const JOIN_RULES: Readonly<Record<string, Rule>> = {
  requestId: checkRequestId,
  ...REGISTRATION_RULES,
  mesh: checkMesh,
};

/** The first problem in a registration's fields, resources included. */
export function registrationProblem(
  input: unknown,
  rules: Readonly<Record<string, Rule>>,
  prefix = "",
): FieldError | undefined {
  return (
    checkFields(input, rules, prefix) ??
    checkFields((input as Record<string, unknown>).resources, RESOURCE_RULES, `${prefix}resources.`)
  );
}

/** Copies exactly the registration's fields out of checked input, in a fixed order. */
export function pickRegistration(input: NodeRegistration): NodeRegistration {
  return {
    name: input.name,
    advertise: input.advertise,
    apiPort: input.apiPort,
    raftPort: input.raftPort,
    wgPort: input.wgPort,
    wgPublicKey: input.wgPublicKey,
    resources: { cores: input.resources.cores, memoryBytes: input.resources.memoryBytes },
    memberSecretHash: input.memberSecretHash,
  };
}

/**
 * Validates a join body. `loopbackCluster` says every current member advertises a loopback
 * address (or there is none): only then may a joiner advertise one, for single-host development.
 */
export function validateJoinRequest(body: unknown, loopbackCluster: boolean): Checked<JoinRequest> {
  const problem = registrationProblem(body, JOIN_RULES);
  if (problem) return { ok: false, problem };
  const request = body as JoinRequest;
  if (isLoopback(request.advertise) && !loopbackCluster) {
    return {
      ok: false,
      problem: {
        field: "advertise",
        error: `advertise ${request.advertise} is a loopback address but the cluster's nodes are not: pass an address the other nodes can reach (--advertise)`,
      },
    };
  }
  return {
    ok: true,
    value: { requestId: request.requestId, ...pickRegistration(request), mesh: request.mesh },
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
