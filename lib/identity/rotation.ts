/**
 * The cluster's credentials as one pair: the token and the public TLS identity whose fingerprint
 * it carries. `mill token rotate` replaces both at once, so the new token pins a new key and a
 * copy of the old key (kept by a node that was removed) serves nobody who holds the new token.
 * Owns: making a pair, judging a pair before a node saves or serves it, and which identities a
 * node accepts from other nodes while a rotation spreads. Must not touch: files, sockets.
 */

import { createPrivateKey, createPublicKey } from "node:crypto";
import { errorMessage } from "../shared/errors.ts";
import { fingerprintOfPem } from "./fingerprint.ts";
import { createSecret, formatToken, hashSecret, parseToken } from "./token.ts";
import { CLUSTER_COMMON_NAME, type ClusterIdentity, createClusterIdentity } from "./x509.ts";

/** A token and the identity it pins. */
export interface ClusterCredentials {
  readonly token: string;
  readonly identity: ClusterIdentity;
}

/**
 * A new identity and a token pinning it, for a cluster served at `advertise` (the node making
 * it). The certificate names the cluster and that address, so other clients can verify a node
 * with it as their CA file (`curl --cacert`). `secret` is the token's, fresh unless given.
 */
export function createCredentials(
  advertise: string,
  secret: string = createSecret(),
): ClusterCredentials {
  const identity = createClusterIdentity({ altNames: [CLUSTER_COMMON_NAME, advertise] });
  return {
    token: formatToken({ secret, fingerprint: fingerprintOfPem(identity.certPem) }),
    identity,
  };
}

/** sha256 hex of the token's secret: what the cluster state holds (see token.ts). */
export function tokenHashOf(token: string): string {
  return hashSecret(parseToken(token).secret);
}

/** Whether `identity`'s private key is the key its certificate names. */
export function keyFitsCertificate(identity: ClusterIdentity): boolean {
  const spki = (key: ReturnType<typeof createPublicKey>) =>
    key.export({ type: "spki", format: "der" }).toString("hex");
  return (
    spki(createPublicKey(createPrivateKey(identity.keyPem))) ===
    spki(createPublicKey(identity.certPem))
  );
}

/**
 * Why `offered` must not be saved or served as the cluster's credentials whose token hash is
 * `tokenHash` (and, where the state knows it, whose certificate fingerprint is `fingerprint`),
 * or undefined when it may. It never names the secret.
 */
export function credentialsProblem(
  offered: ClusterCredentials,
  tokenHash: string,
  fingerprint: string | undefined,
): string | undefined {
  try {
    const pin = parseToken(offered.token).fingerprint;
    if (tokenHashOf(offered.token) !== tokenHash) return "its token is not the committed one";
    const served = fingerprintOfPem(offered.identity.certPem);
    if (served !== pin) {
      return `its certificate (fingerprint ${served}) is not the one its token pins (${pin})`;
    }
    if (fingerprint !== undefined && served !== fingerprint) {
      return `its certificate (fingerprint ${served}) is not the committed one (${fingerprint})`;
    }
    if (!keyFitsCertificate(offered.identity))
      return "its private key does not fit its certificate";
    return undefined;
  } catch (error) {
    return `it is malformed (${errorMessage(error)})`;
  }
}

/**
 * Why `held` (a node's saved token and identity) do not belong together, or undefined when they
 * do: the certificate is the one the token pins and the key is the certificate's.
 */
export function mismatchOf(held: ClusterCredentials): string | undefined {
  const pin = parseToken(held.token).fingerprint;
  const served = fingerprintOfPem(held.identity.certPem);
  if (served !== pin) return `the certificate's fingerprint is ${served}, the token pins ${pin}`;
  return keyFitsCertificate(held.identity) ? undefined : "the key does not fit the certificate";
}

/**
 * The fingerprints a node accepts when it calls another node's public port: the committed one
 * (absent until the first rotation, when it is the one the node serves). Only that one, even
 * while this node still serves the old identity: a copy of the old key must not pass for the
 * cluster to a node either. Calls to a node that has not switched yet fail until it has; the
 * nodes that hand the new pair out have switched.
 */
export function acceptedPins(committed: string | undefined, served: string): string[] {
  return [committed ?? served];
}

/** What a starting node does with its saved credentials and a staged pair it may have. */
export interface Resumption {
  /** The pair the node serves and keeps. */
  readonly use: ClusterCredentials;
  /** Write `use` over the saved files: a save from the staged pair was cut short. */
  readonly rewrite: boolean;
  /** The staged pair still waiting for its commit, if any (a copy of `use` is dropped). */
  readonly staged?: ClusterCredentials;
}

/**
 * Decides how a node starts from its saved token and identity (`saved`) and the staged pair in
 * rotation.next (`staged`). Saved files that belong together are used as they are. Files that
 * do not were cut short while being saved from the staged pair, which was checked against the
 * committed hash before the first of them was written: that save is finished. Anything else is
 * damage nothing here can explain, and throws one line saying what is wrong.
 */
export function resumeCredentials(
  saved: ClusterCredentials,
  staged: ClusterCredentials | undefined,
): Resumption {
  const problem = mismatchOf(saved);
  if (problem === undefined) {
    const waiting = staged && staged.token.trim() !== saved.token.trim() ? staged : undefined;
    return { use: saved, rewrite: false, ...(waiting ? { staged: waiting } : {}) };
  }
  if (staged && mismatchOf(staged) === undefined) return { use: staged, rewrite: true };
  throw new Error(
    `the saved token and TLS identity do not belong together (${problem}) and no staged rotation explains it`,
  );
}
