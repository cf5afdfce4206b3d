/** Secret files on a real disk: modes, atomic replacement, refusal of loose or foreign files. */

import assert from "node:assert/strict";
import {
  chmod,
  chown,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  ensureSecretDir,
  readSecretFile,
  SecretFileError,
  writeSecretFile,
} from "../../../lib/identity/files.ts";

const mode = async (path: string) => (await stat(path)).mode & 0o777;

describe("secret files", () => {
  let root: string;
  let previousUmask: number;
  before(async () => {
    // A permissive umask proves the modes come from the code, not from the environment.
    previousUmask = process.umask(0);
    root = await mkdtemp(join(tmpdir(), "mill-identity-files-"));
  });
  after(async () => {
    process.umask(previousUmask);
    await rm(root, { recursive: true, force: true });
  });

  it("creates missing directories as 0700 and the file as 0600, and reads it back", async () => {
    const dir = join(root, "fresh", "nested");
    await writeSecretFile(join(dir, "token"), "mill_t_secret\n");
    assert.equal(await mode(join(root, "fresh")), 0o700);
    assert.equal(await mode(dir), 0o700);
    assert.equal(await mode(join(dir, "token")), 0o600);
    assert.equal(await readSecretFile(join(dir, "token")), "mill_t_secret\n");
  });

  it("replaces content atomically and leaves no temporary file behind", async () => {
    const dir = join(root, "replace");
    const path = join(dir, "wg.key");
    await writeSecretFile(path, "first");
    await writeSecretFile(path, new TextEncoder().encode("second"));
    assert.equal(await readSecretFile(path), "second");
    assert.deepEqual(await readdir(dir), ["wg.key"]);
    assert.equal(await mode(path), 0o600);
  });

  it("refuses a group-readable file on read and on write, naming the file and the fix", async () => {
    const dir = join(root, "loose-file");
    const path = join(dir, "tls.key");
    await writeSecretFile(path, "original");
    await chmod(path, 0o640);
    const expected = {
      name: "SecretFileError",
      message: `secret file ${path} is accessible to group or others (mode 0640); run: chmod 600 ${path}`,
    };
    await assert.rejects(readSecretFile(path), expected);
    await assert.rejects(writeSecretFile(path, "replacement"), expected);
    assert.equal(await readFile(path, "utf8"), "original");
    assert.deepEqual(await readdir(dir), ["tls.key"]);
  });

  it("refuses a world-readable directory, naming it and the fix", async () => {
    const dir = join(root, "loose-dir");
    await ensureSecretDir(dir);
    await writeSecretFile(join(dir, "token"), "t");
    await chmod(dir, 0o755);
    const expected = {
      message: `secret directory ${dir} is accessible to group or others (mode 0755); run: chmod 700 ${dir}`,
    };
    await assert.rejects(ensureSecretDir(dir), expected);
    await assert.rejects(readSecretFile(join(dir, "token")), expected);
    await assert.rejects(writeSecretFile(join(dir, "other"), "x"), expected);
    assert.deepEqual(await readdir(dir), ["token"]);
  });

  it("refuses a file owned by another user", {
    skip: process.getuid?.() !== 0 && "needs root to chown",
  }, async () => {
    const dir = join(root, "foreign");
    const path = join(dir, "token");
    await writeSecretFile(path, "t");
    await chown(path, 4242, 4242);
    await assert.rejects(readSecretFile(path), {
      message: `secret file ${path} is owned by uid 4242, not by the current user (uid 0); run: chown 0 ${path}`,
    });
  });

  it("refuses a symlink where a secret file should be", async () => {
    const dir = join(root, "link");
    await ensureSecretDir(dir);
    await writeFile(join(root, "elsewhere"), "x", { mode: 0o600 });
    await symlink(join(root, "elsewhere"), join(dir, "token"));
    await assert.rejects(writeSecretFile(join(dir, "token"), "t"), {
      message: `secret file ${join(dir, "token")} is not a regular file; remove it and retry`,
    });
    assert.equal(await readFile(join(root, "elsewhere"), "utf8"), "x");
  });

  it("says plainly when a file or its directory does not exist, or the directory is a file", async () => {
    await assert.rejects(readSecretFile(join(root, "missing-dir", "token")), {
      message: `secret file ${join(root, "missing-dir", "token")} does not exist`,
    });
    await ensureSecretDir(join(root, "empty"));
    await assert.rejects(readSecretFile(join(root, "empty", "token")), SecretFileError);
    await writeFile(join(root, "plain"), "x", { mode: 0o600 });
    await assert.rejects(writeSecretFile(join(root, "plain", "token"), "t"), {
      message: `secret directory ${join(root, "plain")} exists but is not a directory`,
    });
  });
});
