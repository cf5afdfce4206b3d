/** Base32 (RFC 4648 alphabet, lower case) against RFC vectors and seeded round trips. */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { base32Decode, base32Encode, firstNonBase32 } from "../../../lib/identity/base32.ts";

describe("base32", () => {
  it("matches RFC 4648 vectors in lower case", () => {
    assert.equal(base32Encode(new TextEncoder().encode("fooba")), "mzxw6ytb");
    assert.equal(base32Encode(new Uint8Array(0)), "");
    assert.equal(
      base32Encode(Uint8Array.from({ length: 20 }, (_, i) => i)),
      "aaaqeayeaudaocajbifqydiob4ibceqt",
    );
    assert.deepEqual(base32Decode("mzxw6ytb"), new TextEncoder().encode("fooba"));
  });

  it("round-trips any whole number of 5-byte groups", () => {
    const groups = fc
      .integer({ min: 0, max: 12 })
      .chain((n) => fc.uint8Array({ minLength: n * 5, maxLength: n * 5 }));
    fc.assert(
      fc.property(groups, (bytes) => {
        const text = base32Encode(bytes);
        assert.equal(text.length, (bytes.length / 5) * 8);
        assert.equal(firstNonBase32(text), -1);
        assert.deepEqual(base32Decode(text), bytes);
      }),
      { seed: 20240607, numRuns: 200 },
    );
  });

  it("finds the first character outside the alphabet and refuses partial groups", () => {
    assert.equal(firstNonBase32("abc2"), -1);
    assert.equal(firstNonBase32("ab0c"), 2);
    assert.equal(firstNonBase32("Abc"), 0);
    assert.throws(() => base32Encode(new Uint8Array(4)), /multiple of 5 bytes \(got 4\)/);
    assert.throws(() => base32Decode("abcdefg"), /whole 8-character groups/);
    assert.throws(() => base32Decode("abcdefg1"), /whole 8-character groups/);
  });
});
