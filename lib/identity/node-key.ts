/**
 * A node's own TLS identity: a key pair made on the node at init or join, which never leaves its
 * data dir, in a self-signed certificate. The certificate's fingerprint is registered in the
 * node's replicated record, so every member knows every other member's key; node-to-node
 * connections (Raft, the internal API) are mutual TLS with these certificates, and a connection
 * is bound to the node whose registered fingerprint its peer presented.
 * Owns: making a node identity, naming its key, signing with it. Must not touch: files, sockets,
 * the records.
 */

import { Buffer } from "node:buffer";
import { createPublicKey, sign, verify } from "node:crypto";
import { fingerprintOfPem } from "./fingerprint.ts";
import { type ClusterIdentity, createClusterIdentity } from "./x509.ts";

export const NODE_COMMON_NAME = "mill-node";

/** A fresh key pair and certificate for one node. */
export function createNodeIdentity(): ClusterIdentity {
  return createClusterIdentity({ commonName: NODE_COMMON_NAME });
}

/** What the node record holds for the key in `certPem`: its certificate's fingerprint. */
export function nodeKeyOf(certPem: string): string {
  return fingerprintOfPem(certPem);
}

/**
 * Signs `statement` with the node's private key (ECDSA P-256, SHA-256), base64. A join signs its
 * registration this way, so nobody can register, or re-register, a node key without holding it.
 */
export function signWithNodeKey(keyPem: string, statement: string): string {
  return sign("sha256", Buffer.from(statement), keyPem).toString("base64");
}

/** Whether `signature` is `statement` signed by the key of the certificate `certPem`. */
export function signedByNodeKey(certPem: string, statement: string, signature: string): boolean {
  try {
    return verify(
      "sha256",
      Buffer.from(statement),
      createPublicKey(certPem),
      Buffer.from(signature, "base64"),
    );
  } catch {
    return false;
  }
}
