/** DER encoding against hand-checked byte vectors (X.690), and PEM armour round trips. */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { describe, it } from "node:test";
import {
  boolean,
  explicit,
  fromPem,
  integer,
  namedBits,
  objectIdentifier,
  octetString,
  sequence,
  time,
  toPem,
} from "../../../lib/identity/der.ts";

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

describe("DER", () => {
  it("encodes lengths in short form below 128 and long form above", () => {
    assert.equal(hex(octetString(new Uint8Array(127))).slice(0, 4), "047f");
    assert.equal(hex(octetString(new Uint8Array(200))).slice(0, 6), "0481c8");
    assert.equal(hex(octetString(new Uint8Array(300))).slice(0, 8), "0482012c");
    assert.equal(octetString(new Uint8Array(300)).length, 304);
  });

  it("encodes non-negative integers minimally, with a zero byte before a set high bit", () => {
    assert.equal(hex(integer(0)), "020100");
    assert.equal(hex(integer(127)), "02017f");
    assert.equal(hex(integer(128)), "02020080");
    assert.equal(hex(integer(256n)), "02020100");
    assert.equal(hex(integer(Uint8Array.of(0, 0, 1))), "020101");
    assert.equal(hex(integer(Uint8Array.of(0xff, 0x01))), "020300ff01");
    assert.equal(hex(integer(new Uint8Array(0))), "020100");
    assert.throws(() => integer(-1), /must not be negative/);
  });

  it("encodes object identifiers in base 128", () => {
    assert.equal(hex(objectIdentifier("1.2.840.10045.4.3.2")), "06082a8648ce3d040302");
    assert.equal(hex(objectIdentifier("2.5.29.19")), "0603551d13");
    assert.throws(() => objectIdentifier("1.40"), /not a valid object identifier/);
    assert.throws(() => objectIdentifier("1.x.3"), /arc "x"/);
  });

  it("uses UTCTime through 2049 and GeneralizedTime from 2050, in whole seconds", () => {
    const utc = time(new Date("2049-12-31T23:59:59.999Z"));
    assert.equal(utc[0], 0x17);
    assert.equal(new TextDecoder().decode(utc.subarray(2)), "491231235959Z");
    const generalized = time(new Date("2050-01-01T00:00:00Z"));
    assert.equal(generalized[0], 0x18);
    assert.equal(new TextDecoder().decode(generalized.subarray(2)), "20500101000000Z");
    assert.throws(() => time(new Date("1949-06-01T00:00:00Z")), /out of range/);
  });

  it("encodes named bit strings without trailing zero bits", () => {
    assert.equal(hex(namedBits([0])), "03020780");
    assert.equal(hex(namedBits([0, 5])), "03020284");
    assert.equal(hex(namedBits([8])), "0303070080");
    assert.equal(hex(namedBits([])), "030100");
  });

  it("encodes booleans, sequences and explicit tags", () => {
    assert.equal(hex(boolean(true)), "0101ff");
    assert.equal(hex(boolean(false)), "010100");
    assert.equal(hex(sequence()), "3000");
    assert.equal(hex(sequence(integer(1), boolean(true))), "30060201010101ff");
    assert.equal(hex(explicit(0, integer(2))), "a003020102");
  });

  it("round-trips PEM with 64-character lines and names a missing block", () => {
    const der = Uint8Array.from({ length: 100 }, (_, i) => i * 7);
    const pem = toPem("CERTIFICATE", der);
    assert.ok(pem.split("\n").every((line) => line.length <= 64));
    assert.deepEqual(fromPem("CERTIFICATE", pem), der);
    assert.throws(() => fromPem("PRIVATE KEY", pem), {
      message: 'no "PRIVATE KEY" PEM block found',
    });
  });
});
