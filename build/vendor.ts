/**
 * The pinned third-party binaries of vendor/manifest.json: fetches each through its registry's
 * ordinary client (`npm pack`, `apt-get download` with a private sources list), checks the sha256
 * of the archive and of the file taken out of it, and caches the file under vendor/cache/. A file
 * whose sha256 differs from its pin, fetched or cached, is refused; nothing is taken from what the
 * build host has installed, so two builds of one commit embed the same bytes.
 * Owns: vendor/cache/. Must not touch: the host's packages or its apt configuration.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { errorMessage } from "../lib/shared/errors.ts";

export type Arch = "x64" | "arm64";
export const ARCHES: readonly Arch[] = ["x64", "arm64"];

export type PinSource =
  | { readonly registry: "npm"; readonly package: string }
  | {
      readonly registry: "debian";
      readonly suite: string;
      readonly package: string;
      /** Debian's name for the architecture (amd64, arm64). */
      readonly arch: string;
    };

export interface Pin {
  readonly name: string;
  readonly version: string;
  /** What the binary itself says its version is, where that differs from the package's. */
  readonly reports?: string;
  readonly arch: Arch;
  readonly source: PinSource;
  /** The file's path inside the package. */
  readonly file: string;
  readonly archiveSha256: string;
  readonly sha256: string;
  readonly licence: string;
  readonly role: string;
}

export class VendorError extends Error {
  override name = "VendorError";
}

const root = fileURLToPath(new URL("..", import.meta.url));
export const MANIFEST_PATH = join(root, "vendor", "manifest.json");
/** MILL_VENDOR_CACHE lets several checkouts on one machine share their downloads. */
export const CACHE_DIR = process.env.MILL_VENDOR_CACHE || join(root, "vendor", "cache");
/** Debian's mirror for the pins' suites (the host's own apt sources are never used or changed). */
const DEBIAN_MIRROR = process.env.MILL_DEBIAN_MIRROR || "http://deb.debian.org/debian";
const DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg";

const HEX64 = /^[0-9a-f]{64}$/;

export function readManifest(path = MANIFEST_PATH): Pin[] {
  const { pins } = JSON.parse(readFileSync(path, "utf8")) as { pins: Pin[] };
  for (const pin of pins) {
    const where = `${path}: pin ${pin.name} ${pin.arch}`;
    if (!ARCHES.includes(pin.arch)) throw new VendorError(`${where}: unknown arch`);
    if (!HEX64.test(pin.sha256) || !HEX64.test(pin.archiveSha256)) {
      throw new VendorError(`${where}: sha256 and archiveSha256 must be 64 lower-case hex digits`);
    }
    if (!pin.version || !pin.file || !pin.licence) {
      throw new VendorError(`${where}: version, file and licence are required`);
    }
  }
  return pins;
}

export function findPin(pins: readonly Pin[], name: string, arch: Arch): Pin {
  const pin = pins.find((candidate) => candidate.name === name && candidate.arch === arch);
  if (!pin) throw new VendorError(`vendor/manifest.json has no pin for ${name} on ${arch}`);
  return pin;
}

export function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/** Throws unless the file at `path` has the pinned sha256. */
export function checkSha256(path: string, expected: string, what: string, fix: string): void {
  const actual = sha256File(path);
  if (actual !== expected) {
    throw new VendorError(
      `${what} has sha256 ${actual}, but vendor/manifest.json pins ${expected}: refusing it; ${fix}`,
    );
  }
}

const label = (pin: Pin) => `${pin.name} ${pin.version} (${pin.arch})`;

/** Where the cache keeps a pin's file: the version is in the name, so a new pin fetches anew. */
export function cachedPath(pin: Pin, cacheDir = CACHE_DIR): string {
  return join(cacheDir, pin.arch, `${pin.name}-${pin.version}`);
}

function run(command: string, args: readonly string[], cwd: string, what: string): string {
  try {
    return execFileSync(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"] }).toString();
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: Buffer };
    const detail =
      failure.code === "ENOENT"
        ? `${command} is not installed`
        : (failure.stderr?.toString().trim().split("\n").at(-1) ?? failure.message);
    throw new VendorError(`could not fetch ${what}: ${detail}`);
  }
}

/** `npm pack` downloads the package tarball (npm checks the registry's own integrity hash). */
function fetchNpm(pin: Pin, source: { package: string }, work: string): string {
  const spec = `${source.package}@${pin.version}`;
  const name = run(
    "npm",
    ["pack", spec, "--pack-destination", work, "--silent"],
    work,
    `${spec} from the npm registry`,
  )
    .trim()
    .split("\n")
    .at(-1)!;
  return join(work, name);
}

/** `apt-get download` from the pin's suite through a sources list and state of our own. */
function fetchDebian(
  pin: Pin,
  source: { suite: string; package: string; arch: string },
  work: string,
): string {
  const apt = join(work, "apt");
  mkdirSync(join(apt, "lists", "partial"), { recursive: true });
  mkdirSync(join(apt, "cache", "archives", "partial"), { recursive: true });
  writeFileSync(
    join(apt, "sources.list"),
    `deb [arch=${source.arch} signed-by=${DEBIAN_KEYRING}] ${DEBIAN_MIRROR} ${source.suite} main\n`,
  );
  const options = [
    "-qq",
    "-o",
    `Dir::Etc::sourcelist=${join(apt, "sources.list")}`,
    "-o",
    "Dir::Etc::sourceparts=-",
    "-o",
    `Dir::State::Lists=${join(apt, "lists")}`,
    "-o",
    `Dir::Cache=${join(apt, "cache")}`,
    "-o",
    `APT::Architectures::=${source.arch}`,
  ];
  const what = `${source.package} ${pin.version} (${source.arch}) from Debian ${source.suite} at ${DEBIAN_MIRROR}`;
  run("apt-get", [...options, "update"], work, what);
  const download = join(work, "download");
  mkdirSync(download);
  try {
    run(
      "apt-get",
      [...options, "download", `${source.package}:${source.arch}=${pin.version}`],
      download,
      what,
    );
  } catch (error) {
    throw new VendorError(
      `${errorMessage(error)} (if Debian ${source.suite} no longer has this version, update the pin: see vendor/README.md)`,
    );
  }
  const [deb] = readdirSync(download).filter((file) => file.endsWith(".deb"));
  if (!deb) throw new VendorError(`could not fetch ${what}: apt-get downloaded no .deb`);
  return join(download, deb);
}

/** Unpacks the pin's file from a verified archive into `work`. */
function unpack(pin: Pin, archive: string, work: string): string {
  const into = join(work, "unpacked");
  mkdirSync(into);
  if (pin.source.registry === "npm") {
    run("tar", ["-xzf", archive, "-C", into, pin.file], work, `${pin.file} out of ${archive}`);
  } else {
    run("dpkg-deb", ["-x", archive, into], work, `${pin.file} out of ${archive}`);
  }
  const file = join(into, pin.file);
  if (!existsSync(file)) throw new VendorError(`${archive} has no ${pin.file}`);
  return file;
}

/**
 * The path of the pin's file in the cache, fetched and verified first if it is not there. A cached
 * file is re-hashed on every call: a changed one is refused, not silently replaced.
 */
export function vendoredFile(pin: Pin, cacheDir = CACHE_DIR): string {
  const target = cachedPath(pin, cacheDir);
  if (existsSync(target)) {
    checkSha256(
      target,
      pin.sha256,
      `the cached ${label(pin)} at ${target}`,
      `delete it (rm ${target}) to fetch it again`,
    );
    return target;
  }
  mkdirSync(join(cacheDir, pin.arch), { recursive: true });
  const work = mkdtempSync(join(cacheDir, ".fetch-"));
  try {
    process.stderr.write(`fetching ${label(pin)} from ${pin.source.registry}\n`);
    const archive =
      pin.source.registry === "npm"
        ? fetchNpm(pin, pin.source, work)
        : fetchDebian(pin, pin.source, work);
    checkSha256(
      archive,
      pin.archiveSha256,
      `the downloaded ${label(pin)} (${archive.split("/").at(-1)})`,
      "the registry serves other bytes than were pinned; check the pin (vendor/README.md)",
    );
    const file = unpack(pin, archive, work);
    checkSha256(
      file,
      pin.sha256,
      `${pin.file} in ${label(pin)}`,
      "the archive matched but its file did not; check the pin (vendor/README.md)",
    );
    chmodSync(file, 0o755);
    renameSync(file, target);
    return target;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
