/**
 * The cluster's TLS identity: a self-signed X.509 v3 certificate over an ECDSA P-256 key, signed
 * with SHA-256, made with node:crypto alone (no openssl binary, no extra dependency).
 * Owns: certificate layout and key generation. Must not touch: files, sockets, tokens.
 * Nobody validates this certificate against a CA or a hostname: clients pin its fingerprint, so
 * the name and the long validity only have to be acceptable to TLS stacks, not meaningful.
 */

import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import {
  bitString,
  boolean,
  explicit,
  integer,
  namedBits,
  objectIdentifier,
  octetString,
  sequence,
  setOfOne,
  time,
  toPem,
  utf8String,
} from "./der.ts";

export const CLUSTER_COMMON_NAME = "mill-cluster";
export const CLUSTER_VALIDITY_YEARS = 20;

const OID = {
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  commonName: "2.5.4.3",
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
} as const;

const KEY_USAGE_DIGITAL_SIGNATURE = 0;

/** A PEM certificate and its PEM PKCS#8 private key. */
export interface ClusterIdentity {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface CertificateFields {
  /** DER SubjectPublicKeyInfo of the key that signs the certificate (it is self-signed). */
  readonly spki: Uint8Array;
  /** Unsigned big-endian serial number bytes. */
  readonly serial: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly commonName: string;
}

const signatureAlgorithm = sequence(objectIdentifier(OID.ecdsaWithSha256));

function extension(oid: string, critical: boolean, value: Uint8Array): Uint8Array {
  return critical
    ? sequence(objectIdentifier(oid), boolean(true), octetString(value))
    : sequence(objectIdentifier(oid), octetString(value));
}

/** The to-be-signed part of the certificate; issuer and subject are the same name. */
export function encodeTbsCertificate(fields: CertificateFields): Uint8Array {
  const name = sequence(
    setOfOne(sequence(objectIdentifier(OID.commonName), utf8String(fields.commonName))),
  );
  const extensions = sequence(
    // cA defaults to FALSE and DER leaves defaults out, so "not a CA" is an empty sequence.
    extension(OID.basicConstraints, true, sequence()),
    extension(OID.keyUsage, true, namedBits([KEY_USAGE_DIGITAL_SIGNATURE])),
    extension(
      OID.extKeyUsage,
      false,
      sequence(objectIdentifier(OID.serverAuth), objectIdentifier(OID.clientAuth)),
    ),
  );
  return sequence(
    explicit(0, integer(2)), // version v3
    integer(fields.serial),
    signatureAlgorithm,
    name,
    sequence(time(fields.notBefore), time(fields.notAfter)),
    name,
    fields.spki,
    explicit(3, extensions),
  );
}

/** Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }. */
export function encodeCertificate(tbs: Uint8Array, derSignature: Uint8Array): Uint8Array {
  return sequence(tbs, signatureAlgorithm, bitString(derSignature));
}

export interface IdentityOptions {
  readonly now?: Date;
  readonly validityYears?: number;
  readonly commonName?: string;
}

/** A fresh key and certificate. Valid from an hour before `now`, so small clock skew between nodes is harmless. */
export function createClusterIdentity(options: IdentityOptions = {}): ClusterIdentity {
  const now = options.now ?? new Date();
  const notBefore = new Date(now.getTime() - 60 * 60 * 1000);
  const notAfter = new Date(now.getTime());
  notAfter.setUTCFullYear(
    notAfter.getUTCFullYear() + (options.validityYears ?? CLUSTER_VALIDITY_YEARS),
  );
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  // 16 random bytes with the top bit cleared: positive, at most 20 octets as RFC 5280 requires.
  const serial = new Uint8Array(randomBytes(16));
  serial[0]! &= 0x7f;
  const tbs = encodeTbsCertificate({
    spki: new Uint8Array(publicKey.export({ type: "spki", format: "der" })),
    serial,
    notBefore,
    notAfter,
    commonName: options.commonName ?? CLUSTER_COMMON_NAME,
  });
  // node:crypto's default ECDSA output is the DER Ecdsa-Sig-Value X.509 expects (also under Deno).
  const signature = new Uint8Array(sign("sha256", tbs, privateKey));
  return {
    certPem: toPem("CERTIFICATE", encodeCertificate(tbs, signature)),
    keyPem: String(privateKey.export({ type: "pkcs8", format: "pem" })),
  };
}
