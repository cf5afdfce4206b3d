/**
 * The vendor pins: a cached file is re-checked on every use and refused when it changed; a
 * download whose sha256 differs from its pin is refused before anything is unpacked or cached.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { hostArch } from "../../../build/host-packages.ts";
import {
  cachedPath,
  findPin,
  type Pin,
  readManifest,
  VendorError,
  vendoredFile,
} from "../../../build/vendor.ts";

const scratch = mkdtempSync(join(tmpdir(), "mill-vendor-test-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

const sha256 = (bytes: Uint8Array | string) => createHash("sha256").update(bytes).digest("hex");

/** A pin for a small file, so the test needs no large download. */
function smallPin(content: string, overrides: Partial<Pin> = {}): Pin {
  return {
    name: "tool",
    version: "1.0.0",
    arch: "x64",
    source: { registry: "npm", package: "tool-that-is-never-fetched" },
    file: "package/bin/tool",
    archiveSha256: "0".repeat(64),
    sha256: sha256(content),
    licence: "MIT",
    role: "test",
    ...overrides,
  };
}

test("every pin in vendor/manifest.json is complete", () => {
  const pins = readManifest();
  for (const name of ["node", "wireguard-go"]) {
    for (const arch of ["x64", "arm64"] as const) findPin(pins, name, arch);
  }
});

test("a cached file with the pinned sha256 is used as it is", () => {
  const cache = mkdtempSync(join(scratch, "cache-"));
  const pin = smallPin("the real bytes\n");
  mkdirSync(join(cache, "x64"));
  writeFileSync(cachedPath(pin, cache), "the real bytes\n");
  assert.equal(vendoredFile(pin, cache), cachedPath(pin, cache));
});

test("a tampered cache file is refused with the fix, not replaced or used", () => {
  const cache = mkdtempSync(join(scratch, "cache-"));
  const pin = smallPin("the real bytes\n");
  mkdirSync(join(cache, "x64"));
  const path = cachedPath(pin, cache);
  writeFileSync(path, "the real bytes, with a backdoor\n");
  assert.throws(
    () => vendoredFile(pin, cache),
    (error: Error) =>
      error instanceof VendorError &&
      error.message ===
        `the cached tool 1.0.0 (x64) at ${path} has sha256 ${sha256("the real bytes, with a backdoor\n")}, but vendor/manifest.json pins ${pin.sha256}: refusing it; delete it (rm ${path}) to fetch it again`,
  );
  assert.ok(existsSync(path), "the evidence stays for the operator to look at");
});

test("the real cache: the pinned wireguard-go of this host passes, a flipped byte does not", () => {
  // The build has fetched this pin into vendor/cache; copy it so the real cache stays intact.
  const pin = findPin(readManifest(), "wireguard-go", hostArch());
  const original = vendoredFile(pin);
  const cache = mkdtempSync(join(scratch, "cache-"));
  mkdirSync(join(cache, pin.arch));
  const copy = cachedPath(pin, cache);
  const bytes = new Uint8Array(readFileSync(original));
  writeFileSync(copy, bytes);
  assert.equal(vendoredFile(pin, cache), copy);
  bytes[1000] ^= 1;
  writeFileSync(copy, bytes);
  assert.throws(
    () => vendoredFile(pin, cache),
    /has sha256 [0-9a-f]{64}, but vendor\/manifest\.json pins/,
  );
});

test("a download whose sha256 is not the pinned one is refused and nothing is cached", () => {
  // A small package npm ci has already put in npm's cache, with a deliberately wrong archive pin.
  const cache = mkdtempSync(join(scratch, "cache-"));
  const pin = smallPin("unused", {
    name: "citty",
    version: "0.2.2",
    source: { registry: "npm", package: "citty" },
    file: "package/package.json",
    archiveSha256: "f".repeat(64),
  });
  assert.throws(
    () => vendoredFile(pin, cache),
    (error: Error) =>
      error instanceof VendorError &&
      /^the downloaded citty 0\.2\.2 \(x64\) \(citty-0\.2\.2\.tgz\) has sha256 [0-9a-f]{64}, but vendor\/manifest\.json pins f{64}: refusing it/.test(
        error.message,
      ),
  );
  assert.deepEqual(readdirSync(join(cache, "x64")), [], "nothing cached");
  assert.deepEqual(
    readdirSync(cache).filter((entry) => entry.startsWith(".fetch-")),
    [],
    "no download left behind",
  );
});
