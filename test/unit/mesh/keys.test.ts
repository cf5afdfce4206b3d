import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import {
  base64KeyToHex,
  clampPrivateKey,
  generateKeyPair,
  hexKeyToBase64,
  parsePrivateKey,
  parsePublicKey,
  publicKeyFromPrivate,
} from "../../../lib/mesh/keys.ts";

/** Deterministic bytes: sha256(seed:counter). */
function seededRandom(seed: string): (bytes: number) => Uint8Array {
  let counter = 0;
  return (bytes) =>
    new Uint8Array(createHash("sha256").update(`${seed}:${counter++}`).digest()).slice(0, bytes);
}

function hasWg(): boolean {
  try {
    execFileSync("wg", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("keys", () => {
  it("derives the same public key as `wg pubkey` for 20 seeded keys", {
    skip: !hasWg() && "wg (wireguard-tools) is not installed",
  }, () => {
    const random = seededRandom("mesh-keys");
    for (let i = 0; i < 20; i++) {
      const pair = generateKeyPair(random);
      const expected = execFileSync("wg", ["pubkey"], { input: `${pair.privateKey}\n` })
        .toString()
        .trim();
      assert.equal(pair.publicKey, expected, `key ${i}`);
    }
  });

  it("clamps private keys like `wg genkey`", () => {
    const clamped = clampPrivateKey(new Uint8Array(32).fill(0xff));
    assert.equal(clamped[0], 0xf8);
    assert.equal(clamped[31], 0x7f);
    assert.equal(clampPrivateKey(new Uint8Array(32))[31], 0x40);
    const pair = generateKeyPair(seededRandom("clamp"));
    const raw = parsePrivateKey(pair.privateKey);
    assert.equal(raw[0]! & 7, 0);
    assert.equal(raw[31]! & 0xc0, 0x40);
  });

  it("round-trips between base64 and UAPI hex", () => {
    const { publicKey } = generateKeyPair(seededRandom("hex"));
    const hex = base64KeyToHex(publicKey);
    assert.match(hex, /^[0-9a-f]{64}$/);
    assert.equal(hexKeyToBase64(hex), publicKey);
    assert.equal(hexKeyToBase64(hex.toUpperCase()), publicKey);
    assert.throws(() => hexKeyToBase64("abc"), /64 hex digits/);
  });

  it("accepts a real public key and rejects malformed ones", () => {
    const { publicKey } = generateKeyPair(seededRandom("valid"));
    assert.equal(parsePublicKey(publicKey).length, 32);
    assert.throws(() => parsePublicKey("not-a-key"), /44 base64 characters/);
    assert.throws(() => parsePublicKey(publicKey.slice(0, 40)), /44 base64 characters/);
    assert.throws(() => parsePublicKey(`${"A".repeat(43)}=`), /all zeros/);
  });

  it("rejects low-order points", () => {
    const lowOrder = [
      "0100000000000000000000000000000000000000000000000000000000000000",
      "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
      "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
      "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
      "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ];
    for (const hex of lowOrder) {
      assert.throws(() => parsePublicKey(hexKeyToBase64(hex)), /low-order/, hex);
    }
  });

  it("never echoes a private key in its error", () => {
    const secret = "s3cr3t-private-key-material-s3cr3t-private";
    assert.throws(
      () => publicKeyFromPrivate(secret),
      (error: Error) => !error.message.includes(secret) && /private key/.test(error.message),
    );
  });
});
