/**
 * Shared builders for cluster and API unit tests: deterministic keys, hashes and commands.
 * Owns: test data only.
 */

import { type Command, encodeCommand, type NodeRegister } from "../../../lib/cluster/commands.ts";
import { ClusterFsm } from "../../../lib/cluster/fsm.ts";
import { type JoinRequest, registrationStatement } from "../../../lib/cluster/validate.ts";
import { createNodeIdentity, nodeKeyOf, signWithNodeKey } from "../../../lib/identity/node-key.ts";
import type { ClusterIdentity } from "../../../lib/identity/x509.ts";
import { generateKeyPair } from "../../../lib/mesh/keys.ts";
import { PROTOCOL_VERSION } from "../../../lib/shared/protocol.ts";

export const GiB = 1024 ** 3;
export const TOKEN_HASH = "a".repeat(64);
export const MEMBER_HASH = "b".repeat(64);

/** A valid WireGuard public key derived from a fixed seed byte. */
export function publicKey(seed: number): string {
  return generateKeyPair(() => new Uint8Array(32).fill(seed)).publicKey;
}

/** A valid node key fingerprint derived from a seed (1-25). */
export function nodeKey(seed: number): string {
  return "k".repeat(31) + String.fromCharCode(97 + seed);
}

export function init(overrides: Partial<Extract<Command, { type: "ClusterInit" }>> = {}): Command {
  return {
    type: "ClusterInit",
    clusterId: "c1",
    createdAt: 1000,
    mesh: "wireguard",
    meshCidr: "10.99.0.0/16",
    tokenHash: TOKEN_HASH,
    ...overrides,
  };
}

export function register(
  name: string,
  seed: number,
  overrides: Partial<NodeRegister> = {},
): NodeRegister {
  return {
    type: "NodeRegister",
    name,
    advertise: `10.0.0.${seed}`,
    apiPort: 4400,
    raftPort: 4401,
    wgPort: 51820,
    wgPublicKey: publicKey(seed),
    resources: { cores: 4, memoryBytes: 8 * GiB },
    memberSecretHash: MEMBER_HASH,
    nodeKey: nodeKey(seed),
    at: 2000,
    ...overrides,
  };
}

/** A fresh FSM with every command applied in order; returns the FSM and the results. */
export function applied(commands: readonly Command[], fsm = new ClusterFsm()) {
  const results = commands.map((command, i) => fsm.apply(i + 1, encodeCommand(command)));
  return { fsm, results };
}

/** The node key the join bodies below are signed with. */
export const JOINER = createNodeIdentity();

/**
 * `body` with the joiner's proof added: its certificate, the key it names and the signature of
 * the registration, made after any change, as a joiner holding `as` would send it; with this
 * build's protocol unless `body` says another (`protocol: undefined` sends none, as 1.0 did).
 */
export function signJoin(
  body: Record<string, unknown>,
  as: ClusterIdentity = JOINER,
): Record<string, unknown> {
  const unsigned = {
    nodeKey: nodeKeyOf(as.certPem),
    nodeCert: as.certPem,
    protocol: PROTOCOL_VERSION,
    ...body,
  };
  let statement: string;
  try {
    statement = registrationStatement(unsigned as unknown as JoinRequest);
  } catch {
    // A body too broken to state (no resources): the schema refuses it before any signature.
    statement = JSON.stringify(unsigned);
  }
  return { ...unsigned, signature: signWithNodeKey(as.keyPem, statement) };
}

/** A valid POST /v1/join body for node-2 (2 cores, 4G), with `overrides` on top, signed. */
export function joinBody(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return signJoin({
    requestId: "join-node-2-0001",
    name: "node-2",
    advertise: "10.0.0.2",
    apiPort: 4400,
    raftPort: 4401,
    wgPort: 51820,
    wgPublicKey: publicKey(2),
    resources: { cores: 2, memoryBytes: 4 * GiB },
    memberSecretHash: MEMBER_HASH,
    mesh: "wireguard",
    ...overrides,
  });
}
