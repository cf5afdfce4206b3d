/** Token text, fingerprints, secret hashing and constant-time comparison. */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { toPem } from "../../../lib/identity/der.ts";
import { fingerprintOfDer, fingerprintOfPem } from "../../../lib/identity/fingerprint.ts";
import {
  bearerHeader,
  bearerMatches,
  createSecret,
  createToken,
  formatToken,
  hashSecret,
  parseToken,
  TokenError,
  tokensEqual,
} from "../../../lib/identity/token.ts";

const fingerprint = fingerprintOfDer(new TextEncoder().encode("mill"));
const secret = "abcdefghijklmnopqrstuvwxyz234567";
const token = `mill_t_${secret}.${fingerprint}`;

function rejectsWith(text: string, message: string): void {
  assert.throws(
    () => parseToken(text),
    (error: unknown) => {
      assert.ok(error instanceof TokenError);
      assert.equal(error.message, message);
      assert.ok(
        !error.message.includes(secret.slice(0, 8)),
        "the message must not echo the secret",
      );
      return true;
    },
  );
}

describe("fingerprint", () => {
  it("is the first 160 bits of SHA-256 over the DER, in base32", () => {
    assert.equal(fingerprintOfDer(new Uint8Array(0)), "4oymiquy7qobjgx36tejs35zeqt24qpe");
    assert.equal(fingerprint, "sap2ychdwrslcl5lducgessrsanykhyv");
    assert.equal(
      fingerprintOfPem(toPem("CERTIFICATE", new TextEncoder().encode("mill"))),
      fingerprint,
    );
  });
});

describe("token", () => {
  it("has the shape mill_t_<32 base32>.<32 base32> and round-trips", () => {
    const created = createToken(fingerprint);
    assert.match(created, /^mill_t_[a-z2-7]{32}\.[a-z2-7]{32}$/);
    assert.equal(created.length, 72);
    assert.equal(parseToken(created).fingerprint, fingerprint);
    assert.equal(formatToken(parseToken(created)), created);
    assert.notEqual(parseToken(createToken(fingerprint)).secret, parseToken(created).secret);
    assert.match(createSecret(), /^[a-z2-7]{32}$/);
  });

  it("accepts surrounding whitespace and upper case", () => {
    assert.deepEqual(parseToken(`  ${token}\n`), { secret, fingerprint });
    assert.deepEqual(parseToken(token.toUpperCase()), { secret, fingerprint });
  });

  it("names what is wrong with a malformed token, without echoing it", () => {
    const copy = "copy the whole token that `mill init` printed";
    rejectsWith("", "invalid token: it is empty; pass the token that `mill init` printed");
    rejectsWith(`${secret}.${fingerprint}`, `invalid token: it must start with "mill_t_"; ${copy}`);
    rejectsWith(
      `mill_t_${secret}${fingerprint}`,
      'invalid token: it must contain exactly one "." between its secret and fingerprint parts (found 0)',
    );
    rejectsWith(
      `${token}.x`,
      'invalid token: it must contain exactly one "." between its secret and fingerprint parts (found 2)',
    );
    rejectsWith(
      `mill_t_${secret.slice(1)}.${fingerprint}`,
      `invalid token: its secret part has 31 characters, expected 32; ${copy}`,
    );
    rejectsWith(
      `${token}a`,
      `invalid token: its fingerprint part has 33 characters, expected 32; ${copy}`,
    );
    rejectsWith(
      `mill_t_${secret.slice(0, 5)}0${secret.slice(6)}.${fingerprint}`,
      'invalid token: character 13 ("0") is not allowed; tokens use only the letters a-z and the digits 2-7',
    );
    rejectsWith(
      `${token.slice(0, 40)}-${token.slice(41)}`,
      'invalid token: character 41 ("-") is not allowed; tokens use only the letters a-z and the digits 2-7',
    );
  });

  it("refuses to format a token around a malformed fingerprint", () => {
    assert.throws(() => createToken("not-a-fingerprint"), TokenError);
  });
});

describe("secret comparison", () => {
  it("tokensEqual is true exactly for equal strings, whatever the lengths", () => {
    assert.equal(tokensEqual(token, `${token}`), true);
    assert.equal(tokensEqual(token, `${token.slice(0, -1)}a`), token.endsWith("a"));
    assert.equal(tokensEqual(token, token.slice(0, -1)), false);
    assert.equal(tokensEqual("", ""), true);
    fc.assert(
      fc.property(fc.string(), fc.string(), (a, b) => tokensEqual(a, b) === (a === b)),
      { seed: 7, numRuns: 300 },
    );
  });

  it("stores SHA-256 of the secret, never the secret", () => {
    assert.equal(
      hashSecret("abc"),
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
    assert.ok(!hashSecret(secret).includes(secret));
  });

  it("bearerMatches accepts only `Bearer <the secret>`", () => {
    const stored = hashSecret(secret);
    assert.equal(bearerHeader(secret), `Bearer ${secret}`);
    assert.equal(bearerMatches(bearerHeader(secret), stored), true);
    assert.equal(bearerMatches(`Bearer ${secret}x`, stored), false);
    assert.equal(bearerMatches(`Basic ${secret}`, stored), false);
    assert.equal(bearerMatches(secret, stored), false);
    assert.equal(bearerMatches(undefined, stored), false);
    assert.equal(bearerMatches("Bearer ", hashSecret("")), false);
    assert.throws(() => bearerMatches(bearerHeader(secret), secret), /stored secret hash/);
  });
});
