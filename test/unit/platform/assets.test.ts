import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { AssetError, extractExecutable, resolveBinary } from "../../../lib/platform/assets.ts";

async function withTempDir(work: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "mill-assets-test-"));
  try {
    await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("an asset is written once, content-addressed, executable, in a 0700 directory", async () => {
  await withTempDir(async (dir) => {
    const runtime = join(dir, "runtime");
    const bytes = new TextEncoder().encode("#!/bin/sh\necho hi\n");
    const first = await extractExecutable(runtime, "tool", bytes);
    const second = await extractExecutable(runtime, "tool", bytes);
    assert.equal(first, second);
    assert.match(first, /tool-[0-9a-f]{16}$/);
    assert.deepEqual(new Uint8Array(await readFile(first)), bytes);
    assert.equal((await stat(first)).mode & 0o777, 0o700);
    assert.equal((await stat(runtime)).mode & 0o777, 0o700);
    const other = await extractExecutable(runtime, "tool", new TextEncoder().encode("changed"));
    assert.notEqual(other, first);
  });
});

test("a runtime directory readable by others is refused with the chmod fix", async () => {
  await withTempDir(async (dir) => {
    await chmod(dir, 0o755);
    await assert.rejects(
      extractExecutable(dir, "tool", new Uint8Array([1])),
      (error: Error) => error instanceof AssetError && /chmod 700/.test(error.message),
    );
  });
});

test("MILL_WG_BINARY overrides the embedded WireGuard, and a wrong path is a clear error", async () => {
  assert.equal(await resolveBinary("wireguard-go", { MILL_WG_BINARY: "/bin/sh" }), "/bin/sh");
  await assert.rejects(
    resolveBinary("wireguard-go", { MILL_WG_BINARY: "/nonexistent/boringtun" }),
    /MILL_WG_BINARY=\/nonexistent\/boringtun does not exist/,
  );
});
