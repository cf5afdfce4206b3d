/** The pure parts of `mill token rotate`: making a pair, judging one, starting from saved files. */

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { describe, it } from "node:test";
import { fingerprintOfPem } from "../../../lib/identity/fingerprint.ts";
import {
  acceptedPins,
  type ClusterCredentials,
  createCredentials,
  credentialsProblem,
  keyFitsCertificate,
  mismatchOf,
  resumeCredentials,
  tokenHashOf,
} from "../../../lib/identity/rotation.ts";
import { parseToken } from "../../../lib/identity/token.ts";

const ADDRESS = "10.0.0.7";
const old = createCredentials(ADDRESS);
const next = createCredentials(ADDRESS);
const pinOf = (pair: ClusterCredentials) => fingerprintOfPem(pair.identity.certPem);

describe("createCredentials", () => {
  it("makes a token that pins a new identity naming the cluster and the address", () => {
    assert.equal(parseToken(next.token).fingerprint, pinOf(next));
    assert.equal(keyFitsCertificate(next.identity), true);
    const names = new X509Certificate(next.identity.certPem).subjectAltName ?? "";
    assert.match(names, /DNS:mill-cluster/);
    assert.match(names, /IP Address:10\.0\.0\.7/);
  });

  it("gives every rotation a new secret and a new fingerprint", () => {
    assert.notEqual(pinOf(next), pinOf(old));
    assert.notEqual(parseToken(next.token).secret, parseToken(old.token).secret);
  });

  it("keeps a secret it is given (init --token)", () => {
    const secret = "a".repeat(32);
    assert.equal(parseToken(createCredentials(ADDRESS, secret).token).secret, secret);
  });
});

describe("credentialsProblem", () => {
  const hash = tokenHashOf(next.token);

  it("accepts the committed pair, with or without a committed fingerprint", () => {
    assert.equal(credentialsProblem(next, hash, pinOf(next)), undefined);
    assert.equal(credentialsProblem(next, hash, undefined), undefined);
  });

  it("refuses a token that is not the committed one", () => {
    assert.equal(credentialsProblem(old, hash, undefined), "its token is not the committed one");
  });

  it("refuses an identity the token does not pin: the old key with the new token", () => {
    const problem = credentialsProblem(
      { token: next.token, identity: old.identity },
      hash,
      undefined,
    );
    assert.match(problem ?? "", /is not the one its token pins/);
  });

  it("refuses a certificate that is not the committed fingerprint", () => {
    assert.match(credentialsProblem(next, hash, pinOf(old)) ?? "", /is not the committed one/);
  });

  it("refuses a private key that does not fit the certificate", () => {
    const forged = { certPem: next.identity.certPem, keyPem: old.identity.keyPem };
    assert.equal(
      credentialsProblem({ token: next.token, identity: forged }, hash, pinOf(next)),
      "its private key does not fit its certificate",
    );
  });

  it("refuses a malformed answer without throwing", () => {
    const missing = { token: next.token } as unknown as ClusterCredentials;
    assert.match(credentialsProblem(missing, hash, undefined) ?? "", /^it is malformed/);
  });
});

describe("acceptedPins", () => {
  it("is the served fingerprint before any rotation", () => {
    assert.deepEqual(acceptedPins(undefined, "served"), ["served"]);
  });

  it("is the committed fingerprint alone after one, even while this node serves the old", () => {
    assert.deepEqual(acceptedPins("committed", "served"), ["committed"]);
    assert.deepEqual(acceptedPins("committed", "committed"), ["committed"]);
  });
});

describe("resumeCredentials: a start after a crash", () => {
  it("uses saved files that belong together and drops a staged copy of them", () => {
    assert.deepEqual(resumeCredentials(old, undefined), { use: old, rewrite: false });
    assert.deepEqual(resumeCredentials(old, old), { use: old, rewrite: false });
  });

  it("keeps a staged pair that still waits for its commit", () => {
    assert.deepEqual(resumeCredentials(old, next), { use: old, rewrite: false, staged: next });
  });

  it("finishes a save cut short between the key and the certificate", () => {
    const torn = { token: old.token, identity: { ...old.identity, keyPem: next.identity.keyPem } };
    assert.equal(mismatchOf(torn), "the key does not fit the certificate");
    assert.deepEqual(resumeCredentials(torn, next), { use: next, rewrite: true });
  });

  it("finishes a save cut short between the certificate and the token", () => {
    const torn = { token: old.token, identity: next.identity };
    assert.match(mismatchOf(torn) ?? "", /the token pins/);
    assert.deepEqual(resumeCredentials(torn, next), { use: next, rewrite: true });
  });

  it("says in one line what is wrong when nothing explains the mismatch", () => {
    assert.throws(
      () => resumeCredentials({ token: old.token, identity: next.identity }, undefined),
      {
        message:
          /^the saved token and TLS identity do not belong together \(the certificate's fingerprint is \w+, the token pins \w+\) and no staged rotation explains it$/,
      },
    );
  });
});
