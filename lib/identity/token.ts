/**
 * The join token: `mill_t_<secret>.<fingerprint>`, both parts 32 lower-case base32 characters
 * (160 bits each), 72 characters in all. The secret is the bearer credential for every API call;
 * the fingerprint pins the cluster's TLS identity so the secret is only ever sent to the real
 * cluster. Owns: token text, secret hashing, constant-time comparison. Must not touch: I/O.
 * Secrets never appear in error messages: errors name positions and lengths, not contents.
 */

import { Buffer } from "node:buffer";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { base32Encode, firstNonBase32 } from "./base32.ts";
import { FINGERPRINT_CHARS } from "./fingerprint.ts";

export const TOKEN_PREFIX = "mill_t_";
const SECRET_BYTES = 20;
const SECRET_CHARS = 32;
const SEPARATOR = ".";
const SECRET_OFFSET = TOKEN_PREFIX.length;
const FINGERPRINT_OFFSET = SECRET_OFFSET + SECRET_CHARS + SEPARATOR.length;

export interface ParsedToken {
  /** What goes after `Bearer ` in the Authorization header. */
  readonly secret: string;
  /** The pin for the cluster's certificate (see fingerprint.ts). */
  readonly fingerprint: string;
}

/** A malformed token; the message says what is wrong and never contains the token. */
export class TokenError extends Error {
  override name = "TokenError";
}

function checkPart(label: string, part: string, expected: number, offset: number): void {
  if (part.length !== expected) {
    throw new TokenError(
      `invalid token: its ${label} part has ${part.length} characters, expected ${expected}; copy the whole token that \`mill init\` printed`,
    );
  }
  const bad = firstNonBase32(part);
  if (bad !== -1) {
    throw new TokenError(
      `invalid token: character ${offset + bad + 1} (${JSON.stringify(part[bad])}) is not allowed; tokens use only the letters a-z and the digits 2-7`,
    );
  }
}

function checkParts(token: ParsedToken): ParsedToken {
  checkPart("secret", token.secret, SECRET_CHARS, SECRET_OFFSET);
  checkPart("fingerprint", token.fingerprint, FINGERPRINT_CHARS, FINGERPRINT_OFFSET);
  return token;
}

export function formatToken(token: ParsedToken): string {
  checkParts(token);
  return `${TOKEN_PREFIX}${token.secret}${SEPARATOR}${token.fingerprint}`;
}

/** A fresh random secret in token form (also usable alone, e.g. as a node's member secret). */
export function createSecret(): string {
  return base32Encode(new Uint8Array(randomBytes(SECRET_BYTES)));
}

/** A new token with a fresh random secret for the cluster whose certificate has `fingerprint`. */
export function createToken(fingerprint: string): string {
  return formatToken({ secret: createSecret(), fingerprint });
}

/**
 * Splits a token into its secret and fingerprint. Surrounding whitespace and upper case (a token
 * retyped by hand) are accepted; anything else malformed is a TokenError naming the problem.
 */
export function parseToken(text: string): ParsedToken {
  const trimmed = text.trim();
  if (trimmed.length === 0) {
    throw new TokenError("invalid token: it is empty; pass the token that `mill init` printed");
  }
  if (!trimmed.toLowerCase().startsWith(TOKEN_PREFIX)) {
    throw new TokenError(
      `invalid token: it must start with "${TOKEN_PREFIX}"; copy the whole token that \`mill init\` printed`,
    );
  }
  const body = trimmed.slice(TOKEN_PREFIX.length).toLowerCase();
  const parts = body.split(SEPARATOR);
  if (parts.length !== 2) {
    throw new TokenError(
      `invalid token: it must contain exactly one "${SEPARATOR}" between its secret and fingerprint parts (found ${parts.length - 1})`,
    );
  }
  const [secret, fingerprint] = parts as [string, string];
  return checkParts({ secret, fingerprint });
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/** Constant-time equality: both sides are hashed first, so neither content nor length leaks. */
export function tokensEqual(a: string, b: string): boolean {
  return timingSafeEqual(sha256(a), sha256(b));
}

/** What the cluster stores instead of the secret: hex SHA-256 of it. */
export function hashSecret(secret: string): string {
  return sha256(secret).toString("hex");
}

export function bearerHeader(secret: string): string {
  return `Bearer ${secret}`;
}

const BEARER = /^Bearer ([^\s]+)$/i;

/** A bearer credential: the secret, and the fingerprint when the whole token was sent. */
export interface BearerCredential {
  readonly secret: string;
  /** Present when the header carried `mill_t_<secret>.<fingerprint>`: the cluster it is for. */
  readonly fingerprint?: string;
}

/**
 * The credential in an Authorization header: `Bearer <secret>`, or the whole token as `mill init`
 * printed it (`Bearer mill_t_<secret>.<fingerprint>`). Undefined without a Bearer credential. A
 * malformed token is kept whole as the secret, which then matches nothing.
 */
export function bearerCredential(authorization: string | undefined): BearerCredential | undefined {
  const value = BEARER.exec(authorization?.trim() ?? "")?.[1];
  if (value === undefined) return undefined;
  if (!value.toLowerCase().startsWith(TOKEN_PREFIX)) return { secret: value };
  try {
    return parseToken(value);
  } catch {
    return { secret: value };
  }
}

/** Whether `secret` hashes to `secretHash` (from hashSecret), compared in constant time. */
export function secretMatches(secret: string, secretHash: string): boolean {
  const stored = /^[0-9a-f]{64}$/.test(secretHash) ? Buffer.from(secretHash, "hex") : undefined;
  if (!stored) throw new RangeError("stored secret hash is not 64 lower-case hex characters");
  return timingSafeEqual(sha256(secret), stored);
}

/**
 * Whether an Authorization header carries the secret whose hash is `secretHash` (from hashSecret).
 * Compared in constant time; a missing or non-Bearer header is simply false.
 */
export function bearerMatches(authorization: string | undefined, secretHash: string): boolean {
  const match = BEARER.exec(authorization?.trim() ?? "");
  // Hash something even without a header so the reply time does not tell the two cases apart.
  return secretMatches(match?.[1] ?? "", secretHash) && match !== null;
}
