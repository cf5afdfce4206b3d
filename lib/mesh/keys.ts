/**
 * WireGuard keys: x25519 key pairs, clamped like `wg genkey`, base64 in files and APIs, hex on the UAPI.
 * Owns: key generation, derivation, parsing and validation. Must not touch: files, sockets, logs
 * (a private key never appears in an error message).
 */
import { Buffer } from "node:buffer";
import { x25519 } from "@noble/curves/ed25519.js";

export const KEY_BYTES = 32;

export interface KeyPair {
  /** base64, 44 characters; a secret. */
  readonly privateKey: string;
  /** base64, 44 characters. */
  readonly publicKey: string;
}

const BASE64_KEY = /^[A-Za-z0-9+/]{43}=$/;
const HEX_KEY = /^[0-9a-fA-F]{64}$/;

/** Clears the low three bits and the top bit and sets bit 254, as `wg genkey` does. Returns a copy. */
export function clampPrivateKey(raw: Uint8Array): Uint8Array {
  if (raw.length !== KEY_BYTES)
    throw new Error(`a private key has ${KEY_BYTES} bytes, got ${raw.length}`);
  const key = Uint8Array.from(raw);
  key[0] = key[0]! & 248;
  key[31] = (key[31]! & 127) | 64;
  return key;
}

/** A fresh key pair; `random` is injectable so tests can be seeded. */
export function generateKeyPair(
  random: (bytes: number) => Uint8Array = () => x25519.utils.randomSecretKey(),
): KeyPair {
  const privateKey = keyToBase64(clampPrivateKey(random(KEY_BYTES)));
  return { privateKey, publicKey: publicKeyFromPrivate(privateKey) };
}

/** The public key (base64) of a base64 private key. */
export function publicKeyFromPrivate(privateKey: string): string {
  return keyToBase64(x25519.getPublicKey(parsePrivateKey(privateKey)));
}

/** Decodes a base64 private key; the error never echoes the input. */
export function parsePrivateKey(text: string): Uint8Array {
  if (typeof text !== "string" || !BASE64_KEY.test(text)) {
    throw new Error(
      "invalid WireGuard private key: expected 44 base64 characters (32 bytes), as made by `wg genkey`",
    );
  }
  return new Uint8Array(Buffer.from(text, "base64"));
}

/** Decodes and validates a base64 public key: 32 bytes, not all zero, not a low-order point. */
export function parsePublicKey(text: string): Uint8Array {
  if (typeof text !== "string" || !BASE64_KEY.test(text)) {
    throw new Error(
      `invalid WireGuard public key ${JSON.stringify(String(text).slice(0, 60))}: expected 44 base64 characters (32 bytes), as made by \`wg pubkey\``,
    );
  }
  const key = new Uint8Array(Buffer.from(text, "base64"));
  if (key.every((byte) => byte === 0)) {
    throw new Error(
      `invalid WireGuard public key ${text}: it is all zeros; use the peer's real key`,
    );
  }
  if (isLowOrder(key)) {
    throw new Error(
      `invalid WireGuard public key ${text}: a low-order curve point that no session could trust; use the peer's real key`,
    );
  }
  return key;
}

/** Curve25519's field prime, 2^255 - 19. */
const FIELD_PRIME = 2n ** 255n - 19n;
/** u-coordinates of the points of order 1, 2, 4 and 8 (RFC 7748 section 7); their shared secrets are predictable. */
const LOW_ORDER_U = new Set([
  0n,
  1n,
  FIELD_PRIME - 1n,
  325606250916557431795983626356110631294008115727848805560023387167927233504n,
  39382357235489614581723060781553021112529911719440698176882885853963445705823n,
]);

/** Decodes u the way X25519 does (little endian, top bit ignored, reduced mod p), then looks it up. */
function isLowOrder(key: Uint8Array): boolean {
  let u = 0n;
  for (let i = KEY_BYTES - 1; i >= 0; i--)
    u = (u << 8n) | BigInt(i === KEY_BYTES - 1 ? key[i]! & 0x7f : key[i]!);
  return LOW_ORDER_U.has(u % FIELD_PRIME);
}

export function keyToBase64(key: Uint8Array): string {
  return Buffer.from(key).toString("base64");
}

export function keyToHex(key: Uint8Array): string {
  return Buffer.from(key).toString("hex");
}

/** base64 (APIs, files) → lower-case hex (UAPI). Validates shape only, so it also serves private keys. */
export function base64KeyToHex(text: string): string {
  if (!BASE64_KEY.test(text))
    throw new Error("invalid WireGuard key: expected 44 base64 characters");
  return Buffer.from(text, "base64").toString("hex");
}

/** hex (UAPI) → base64. */
export function hexKeyToBase64(hex: string): string {
  if (!HEX_KEY.test(hex))
    throw new Error("invalid WireGuard key on the UAPI: expected 64 hex digits");
  return Buffer.from(hex, "hex").toString("base64");
}
