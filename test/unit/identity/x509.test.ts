/** The generated cluster certificate, read back by node:crypto's X.509 parser. */

import assert from "node:assert/strict";
import { createPrivateKey, createPublicKey, sign, verify, X509Certificate } from "node:crypto";
import { describe, it } from "node:test";
import { fromPem } from "../../../lib/identity/der.ts";
import { fingerprintOfDer, fingerprintOfPem } from "../../../lib/identity/fingerprint.ts";
import { createClusterIdentity } from "../../../lib/identity/x509.ts";

describe("cluster certificate", () => {
  const now = new Date("2026-03-01T12:00:00Z");
  const identity = createClusterIdentity({ now });
  const cert = new X509Certificate(identity.certPem);

  it("is a self-signed v3 certificate for CN=mill-cluster valid for 20 years", () => {
    assert.equal(cert.subject, "CN=mill-cluster");
    assert.equal(cert.issuer, "CN=mill-cluster");
    assert.equal(new Date(cert.validFrom).toISOString(), "2026-03-01T11:00:00.000Z");
    assert.equal(new Date(cert.validTo).toISOString(), "2046-03-01T12:00:00.000Z");
    assert.equal(cert.verify(cert.publicKey), true);
    assert.equal(cert.ca, false);
    // A positive 127-bit random number. Parsers print it in hex without leading zeros (Deno's
    // drops a leading zero digit, failing a fixed-width match about once in eight), so it is
    // compared as a number.
    const serial = BigInt(`0x${cert.serialNumber}`);
    assert.ok(
      serial > 0n && serial < 1n << 127n,
      `serial ${cert.serialNumber} is not in (0, 2^127)`,
    );
  });

  it("carries the public half of the PKCS#8 P-256 key", () => {
    assert.match(identity.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    const privateKey = createPrivateKey(identity.keyPem);
    assert.equal(privateKey.asymmetricKeyType, "ec");
    assert.deepEqual(privateKey.asymmetricKeyDetails, { namedCurve: "prime256v1" });
    const data = new TextEncoder().encode("proof of possession");
    assert.equal(verify("sha256", data, cert.publicKey, sign("sha256", data, privateKey)), true);
    assert.deepEqual(
      createPublicKey(privateKey).export({ type: "spki", format: "der" }),
      cert.publicKey.export({ type: "spki", format: "der" }),
    );
  });

  it("has a fingerprint over exactly the DER the parser sees", () => {
    assert.equal(fingerprintOfPem(identity.certPem), fingerprintOfDer(cert.raw));
    assert.deepEqual(fromPem("CERTIFICATE", identity.certPem), new Uint8Array(cert.raw));
  });

  it("switches to GeneralizedTime past 2049 and differs on every call", () => {
    const late = createClusterIdentity({
      now: new Date("2040-01-01T00:00:00Z"),
      validityYears: 30,
    });
    const parsed = new X509Certificate(late.certPem);
    assert.equal(new Date(parsed.validTo).toISOString(), "2070-01-01T00:00:00.000Z");
    assert.equal(parsed.verify(parsed.publicKey), true);
    assert.notEqual(fingerprintOfPem(late.certPem), fingerprintOfPem(identity.certPem));
    assert.notEqual(parsed.serialNumber, cert.serialNumber);
  });
});
