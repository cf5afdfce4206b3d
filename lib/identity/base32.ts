/**
 * Lower-case RFC 4648 base32 without padding: letters and the digits 2-7 only, so tokens survive
 * shells, URLs, chat clients and being read aloud. Owns: the alphabet. Must not touch: what the
 * bytes mean.
 */

export const BASE32_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";

/** Encodes whole 5-byte groups only, so every character carries five data bits and nothing is padding. */
export function base32Encode(bytes: Uint8Array): string {
  if (bytes.length % 5 !== 0) {
    throw new RangeError(`base32Encode takes a multiple of 5 bytes (got ${bytes.length})`);
  }
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = ((buffer << 8) | byte) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += BASE32_ALPHABET[(buffer >> bits) & 31];
    }
  }
  return out;
}

/**
 * The first character outside the alphabet, as its 0-based position, or -1. Callers name the
 * position in their own error message (the rest of the text may be secret).
 */
export function firstNonBase32(text: string): number {
  for (let i = 0; i < text.length; i++) if (!BASE32_ALPHABET.includes(text[i]!)) return i;
  return -1;
}

/** Decodes text of a multiple of 8 characters, all from the alphabet (check with firstNonBase32). */
export function base32Decode(text: string): Uint8Array {
  if (text.length % 8 !== 0 || firstNonBase32(text) !== -1) {
    throw new RangeError("base32Decode takes whole 8-character groups of a-z and 2-7");
  }
  const out = new Uint8Array((text.length / 8) * 5);
  let buffer = 0;
  let bits = 0;
  let offset = 0;
  for (const char of text) {
    buffer = ((buffer << 5) | BASE32_ALPHABET.indexOf(char)) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[offset++] = (buffer >> bits) & 0xff;
    }
  }
  return out;
}
