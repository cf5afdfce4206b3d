/**
 * A minimal DER encoder: exactly the ASN.1 types a self-signed X.509 certificate needs, plus PEM
 * armour. Owns: byte layout of tag-length-value triples. Must not touch: keys, randomness, I/O.
 */

import { Buffer } from "node:buffer";
import { concatBytes } from "../shared/bytes.ts";

const TAG = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  objectIdentifier: 0x06,
  utf8String: 0x0c,
  sequence: 0x30,
  set: 0x31,
  utcTime: 0x17,
  generalizedTime: 0x18,
} as const;

const textEncoder = new TextEncoder();

function encodeLength(length: number): Uint8Array {
  if (length < 0x80) return Uint8Array.of(length);
  const bytes: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}

/** One tag-length-value triple with a single-byte tag. */
export function tlv(tag: number, content: Uint8Array): Uint8Array {
  return concatBytes([Uint8Array.of(tag), encodeLength(content.length), content]);
}

export function sequence(...items: Uint8Array[]): Uint8Array {
  return tlv(TAG.sequence, concatBytes(items));
}

/** SET OF with a single member (a certificate name's RDN); DER ordering of several is not needed. */
export function setOfOne(item: Uint8Array): Uint8Array {
  return tlv(TAG.set, item);
}

export function boolean(value: boolean): Uint8Array {
  return tlv(TAG.boolean, Uint8Array.of(value ? 0xff : 0x00));
}

/** A non-negative INTEGER from a number, a bigint, or unsigned big-endian bytes. */
export function integer(value: number | bigint | Uint8Array): Uint8Array {
  let magnitude: Uint8Array;
  if (value instanceof Uint8Array) {
    magnitude = value;
  } else {
    let rest = BigInt(value);
    if (rest < 0n) throw new RangeError(`DER integer must not be negative (got ${rest})`);
    const bytes: number[] = [];
    do {
      bytes.unshift(Number(rest & 0xffn));
      rest >>= 8n;
    } while (rest > 0n);
    magnitude = Uint8Array.from(bytes);
  }
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const minimal = magnitude.length === 0 ? Uint8Array.of(0) : magnitude.subarray(start);
  // A set high bit would read as negative in two's complement, so such values get a zero byte in front.
  const content = minimal[0]! & 0x80 ? concatBytes([Uint8Array.of(0), minimal]) : minimal;
  return tlv(TAG.integer, content);
}

/** BIT STRING whose bit count is a multiple of eight (signatures, key identifiers). */
export function bitString(bytes: Uint8Array): Uint8Array {
  return tlv(TAG.bitString, concatBytes([Uint8Array.of(0), bytes]));
}

/** BIT STRING of named bits (bit 0 is the most significant), trailing zero bits dropped as DER requires. */
export function namedBits(bits: readonly number[]): Uint8Array {
  if (bits.length === 0) return tlv(TAG.bitString, Uint8Array.of(0));
  const highest = Math.max(...bits);
  const bytes = new Uint8Array(Math.floor(highest / 8) + 1);
  for (const bit of bits) bytes[bit >> 3]! |= 0x80 >> (bit & 7);
  const unusedBits = 7 - (highest & 7);
  return tlv(TAG.bitString, concatBytes([Uint8Array.of(unusedBits), bytes]));
}

export function octetString(bytes: Uint8Array): Uint8Array {
  return tlv(TAG.octetString, bytes);
}

export function utf8String(text: string): Uint8Array {
  return tlv(TAG.utf8String, textEncoder.encode(text));
}

export function objectIdentifier(dotted: string): Uint8Array {
  const arcs = dotted.split(".").map((arc) => {
    if (!/^\d+$/.test(arc)) throw new RangeError(`OID arc "${arc}" in "${dotted}" is not a number`);
    return Number(arc);
  });
  if (arcs.length < 2 || arcs[0]! > 2 || (arcs[0]! < 2 && arcs[1]! > 39)) {
    throw new RangeError(`"${dotted}" is not a valid object identifier`);
  }
  const body: number[] = [];
  for (const arc of [arcs[0]! * 40 + arcs[1]!, ...arcs.slice(2)]) {
    const chunk = [arc % 128];
    for (let rest = Math.floor(arc / 128); rest > 0; rest = Math.floor(rest / 128)) {
      chunk.unshift(0x80 | (rest % 128));
    }
    body.push(...chunk);
  }
  return tlv(TAG.objectIdentifier, Uint8Array.from(body));
}

/** RFC 5280 Time: UTCTime through 2049, GeneralizedTime from 2050; whole seconds, always Zulu. */
export function time(date: Date): Uint8Array {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  const year = date.getUTCFullYear();
  if (year < 1950 || year > 9999) throw new RangeError(`certificate time ${iso} is out of range`);
  return year < 2050
    ? tlv(TAG.utcTime, textEncoder.encode(digits.slice(2)))
    : tlv(TAG.generalizedTime, textEncoder.encode(digits));
}

/** [n] EXPLICIT: a context-specific constructed wrapper around one encoded value. */
export function explicit(tagNumber: number, inner: Uint8Array): Uint8Array {
  return tlv(0xa0 | tagNumber, inner);
}

export function toPem(label: string, der: Uint8Array): string {
  const base64 = Buffer.from(der).toString("base64");
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** The DER inside the first PEM block labelled `label`. */
export function fromPem(label: string, pem: string): Uint8Array {
  const match = new RegExp(
    `-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`,
  ).exec(pem);
  if (!match) throw new Error(`no "${label}" PEM block found`);
  return new Uint8Array(Buffer.from(match[1]!.replace(/\s+/g, ""), "base64"));
}
