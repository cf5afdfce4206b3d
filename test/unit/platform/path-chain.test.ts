import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { AssetError, defaultRuntimeDir, extractExecutable } from "../../../lib/platform/assets.ts";
import {
  ancestors,
  chainProblem,
  type PathFacts,
  realChainProblem,
} from "../../../lib/platform/path-chain.ts";

const facts =
  (table: Record<string, PathFacts>) =>
  (path: string): PathFacts | undefined =>
    table[path];

const ROOT_DIRS = { "/": { uid: 0, mode: 0o755 }, "/var": { uid: 0, mode: 0o755 } };

describe("the parents of the runtime and data dirs", () => {
  test("ancestors run from / down to the path", () => {
    assert.deepEqual(ancestors("/var/lib/mill/"), ["/", "/var", "/var/lib", "/var/lib/mill"]);
  });

  test("root's and our own parents pass; missing ones will be made private", () => {
    const table = { ...ROOT_DIRS, "/var/lib": { uid: 1000, mode: 0o755 } };
    assert.equal(chainProblem("/var/lib/mill", 1000, facts(table)), undefined);
    assert.equal(chainProblem("/var/lib/x/y/mill", 1000, facts(table)), undefined);
  });

  test("a parent writable by others names the path and the chmod fix", () => {
    const table = { ...ROOT_DIRS, "/var/lib": { uid: 0, mode: 0o777 } };
    assert.equal(
      chainProblem("/var/lib/mill", 0, facts(table)),
      "/var/lib (a parent of /var/lib/mill) is writable by other users (mode 0777), who could replace what is under it; run: chmod go-w /var/lib",
    );
    const group = { ...ROOT_DIRS, "/var/lib": { uid: 0, mode: 0o775 } };
    assert.match(chainProblem("/var/lib/mill", 0, facts(group))!, /mode 0775/);
  });

  test("the sticky bit (/tmp) makes a shared parent safe", () => {
    const table = { ...ROOT_DIRS, "/var/lib": { uid: 0, mode: 0o1777 } };
    assert.equal(chainProblem("/var/lib/mill", 1000, facts(table)), undefined);
  });

  test("a parent owned by another user is refused, whatever its mode", () => {
    const table = { ...ROOT_DIRS, "/var/lib": { uid: 1001, mode: 0o700 } };
    assert.match(
      chainProblem("/var/lib/mill", 1000, facts(table))!,
      /^\/var\/lib \(a parent of \/var\/lib\/mill\) belongs to uid 1001/,
    );
  });

  test("the directory itself is not judged here (its own check wants 0700)", () => {
    const table = {
      ...ROOT_DIRS,
      "/var/lib": { uid: 0, mode: 0o755 },
      "/var/lib/mill": { uid: 5, mode: 0o777 },
    };
    assert.equal(chainProblem("/var/lib/mill", 0, facts(table)), undefined);
  });

  test("on disk: a world-writable parent without sticky bit, also behind a symlink", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mill-chain-test-"));
    try {
      const open = join(dir, "open");
      await mkdir(open);
      await chmod(open, 0o777);
      assert.match(
        realChainProblem(join(open, "mill"))!,
        /open \(a parent of .*\) is writable by other users/,
      );
      await symlink(open, join(dir, "link"));
      assert.match(realChainProblem(join(dir, "link", "mill"))!, /is writable by other users/);
      await assert.rejects(
        extractExecutable(join(open, "runtime"), "tool", new Uint8Array([1])),
        (error: Error) => error instanceof AssetError && /chmod go-w/.test(error.message),
      );
      await chmod(open, 0o755);
      assert.equal(realChainProblem(join(dir, "link", "mill")), undefined);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("the default runtime dir", () => {
  test("/run/mill as root, $XDG_RUNTIME_DIR/mill for a user, else none (a fresh temp dir)", () => {
    assert.equal(defaultRuntimeDir(0, "/run/user/0"), "/run/mill");
    assert.equal(defaultRuntimeDir(1000, "/run/user/1000"), "/run/user/1000/mill");
    assert.equal(defaultRuntimeDir(1000, ""), undefined);
    assert.equal(defaultRuntimeDir(1000, undefined), undefined);
  });
});
