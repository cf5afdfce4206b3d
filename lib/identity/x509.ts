/**
 * The cluster's TLS identity: a self-signed X.509 v3 certificate over an ECDSA P-256 key, signed
 * with SHA-256, made with node:crypto alone (no openssl binary, no extra dependency).
 * Owns: certificate layout and key generation. Must not touch: files, sockets, tokens.
 * Mill's clients pin its fingerprint. The cluster certificate also names the cluster
 * (`mill-cluster`) and the first node's address as subjectAltNames, so that any other client can
 * verify a node with the certificate as its CA file (`curl --cacert`).
 */

import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { isIPv4, isIPv6 } from "node:net";
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
  tlv,
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
  subjectAltName: "2.5.29.17",
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
  /** subjectAltName entries: DNS names and IP addresses a verifying client may ask for. */
  readonly altNames?: readonly string[];
}

const signatureAlgorithm = sequence(objectIdentifier(OID.ecdsaWithSha256));

function extension(oid: string, critical: boolean, value: Uint8Array): Uint8Array {
  return critical
    ? sequence(objectIdentifier(oid), boolean(true), octetString(value))
    : sequence(objectIdentifier(oid), octetString(value));
}

/** An IP literal's bytes (4 or 16), or undefined for a name. */
function ipBytes(text: string): Uint8Array | undefined {
  if (isIPv4(text)) return new Uint8Array(text.split(".").map(Number));
  if (!isIPv6(text)) return undefined;
  const [head, tail = ""] = text.split("::") as [string, string?];
  const groups = (part: string) => (part === "" ? [] : part.split(":"));
  const left = groups(head);
  const right = groups(text.includes("::") ? tail : "");
  const all = [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  return new Uint8Array(
    all.flatMap((group) => [parseInt(group, 16) >> 8, parseInt(group, 16) & 0xff]),
  );
}

/** GeneralNames: dNSName [2] for a name, iPAddress [7] for an IP literal (RFC 5280 4.2.1.6). */
function generalNames(names: readonly string[]): Uint8Array {
  return sequence(
    ...names.map((name) => {
      const ip = ipBytes(name);
      return ip ? tlv(0x87, ip) : tlv(0x82, new TextEncoder().encode(name));
    }),
  );
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
    ...(fields.altNames?.length
      ? [extension(OID.subjectAltName, false, generalNames(fields.altNames))]
      : []),
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
  /** subjectAltName entries (DNS names, IP literals), so that clients can verify by name. */
  readonly altNames?: readonly string[];
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
    ...(options.altNames ? { altNames: options.altNames } : {}),
  });
  // node:crypto's default ECDSA output is the DER Ecdsa-Sig-Value X.509 expects (also under Deno).
  const signature = new Uint8Array(sign("sha256", tbs, privateKey));
  return {
    certPem: toPem("CERTIFICATE", encodeCertificate(tbs, signature)),
    keyPem: String(privateKey.export({ type: "pkcs8", format: "pem" })),
  };
}
