/**
 * The pin a token carries: the first 160 bits of SHA-256 over the certificate's DER, in base32.
 * Owns: how a certificate is reduced to a pin. Must not touch: sockets, files.
 * 160 bits is far beyond second-preimage reach for a certificate an attacker cannot choose, and it
 * encodes to exactly 32 base32 characters.
 */

import { createHash } from "node:crypto";
import { base32Encode } from "./base32.ts";
import { fromPem } from "./der.ts";

export const FINGERPRINT_BYTES = 20;
export const FINGERPRINT_CHARS = 32;

export function fingerprintOfDer(certDer: Uint8Array): string {
  const digest = createHash("sha256").update(certDer).digest();
  return base32Encode(new Uint8Array(digest.subarray(0, FINGERPRINT_BYTES)));
}

export function fingerprintOfPem(certPem: string): string {
  return fingerprintOfDer(fromPem("CERTIFICATE", certPem));
}
