import assert from "node:assert/strict";
import { fdatasyncSync, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { StorageCorruptError } from "../../../lib/raft/storage/records.ts";
import { openStorage, type StorageFs } from "../../../lib/raft/storage/storage.ts";
import type { Entry, Snapshot } from "../../../lib/raft/types.ts";

const roots: string[] = [];
after(() => Promise.all(roots.map((r) => fs.rm(r, { recursive: true, force: true }))));

async function freshDir(): Promise<string> {
  const root = await fs.mkdtemp(join(tmpdir(), "mill-storage-"));
  roots.push(root);
  return join(root, "raft");
}

function entries(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let index = from; index <= to; index++) {
    out.push({
      index,
      term,
      kind: "command",
      data: new TextEncoder().encode(`cmd-${index}-${term}`),
    });
  }
  return out;
}

const summary = (es: readonly Entry[]) => es.map((e) => `${e.index}@${e.term}`);

async function reopened(dir: string) {
  const storage = await openStorage(dir);
  await storage.close();
  return storage.restore();
}

async function segmentFiles(dir: string): Promise<string[]> {
  return (await fs.readdir(dir)).filter((n) => n.endsWith(".log")).sort();
}

describe("raft storage", () => {
  test("entries and hard state round-trip; an overlapping append truncates", async () => {
    const dir = await freshDir();
    const storage = await openStorage(dir);
    assert.deepEqual(storage.restore(), {
      hardState: { term: 0, vote: 0, commit: 0 },
      snapshot: undefined,
      entries: [],
    });
    await storage.save({ entries: entries(1, 5, 1), hardState: { term: 1, vote: 2, commit: 3 } });
    await storage.save({ entries: entries(4, 6, 2), hardState: { term: 2, vote: 3, commit: 4 } });
    await storage.close();

    const reopened = await openStorage(dir);
    const state = reopened.restore();
    assert.deepEqual(state.hardState, { term: 2, vote: 3, commit: 4 });
    assert.deepEqual(summary(state.entries), ["1@1", "2@1", "3@1", "4@2", "5@2", "6@2"]);
    assert.equal(new TextDecoder().decode(state.entries[5]!.data), "cmd-6-2");
    await reopened.close();
  });

  test("the directory is 0700 and its files 0600", async () => {
    const dir = await freshDir();
    const storage = await openStorage(dir);
    await storage.save({ entries: entries(1, 1, 1) });
    await storage.saveSnapshot({
      meta: { index: 1, term: 1, membership: { voters: [1], learners: [] } },
      data: new Uint8Array([7]),
    });
    await storage.close();
    assert.equal((await fs.stat(dir)).mode & 0o777, 0o700);
    for (const name of await fs.readdir(dir)) {
      assert.equal((await fs.stat(join(dir, name))).mode & 0o777, 0o600, name);
    }
  });

  test("a torn last record is dropped with a warning and the log stays usable", async () => {
    const dir = await freshDir();
    const storage = await openStorage(dir);
    await storage.save({ entries: entries(1, 3, 1) });
    await storage.save({ entries: entries(4, 6, 1) });
    await storage.close();
    const [segment] = await segmentFiles(dir);
    const path = join(dir, segment!);
    const size = (await fs.stat(path)).size;
    await fs.truncate(path, size - 5);

    const warnings: string[] = [];
    const reopened = await openStorage(dir, { warn: (m) => warnings.push(m) });
    assert.deepEqual(summary(reopened.restore().entries), ["1@1", "2@1", "3@1"]);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /torn tail/);
    await reopened.save({ entries: entries(4, 4, 2) });
    await reopened.close();

    const third = await openStorage(dir, { warn: (m) => warnings.push(m) });
    assert.deepEqual(summary(third.restore().entries), ["1@1", "2@1", "3@1", "4@2"]);
    assert.equal(warnings.length, 1);
    await third.close();
  });

  test("a flipped byte in a middle record refuses to open, naming file and offset", async () => {
    const dir = await freshDir();
    const storage = await openStorage(dir);
    await storage.save({ entries: entries(1, 3, 1) });
    await storage.save({ entries: entries(4, 6, 1) });
    await storage.close();
    const path = join(dir, (await segmentFiles(dir))[0]!);
    const bytes = await fs.readFile(path);
    bytes[12]! ^= 0xff;
    await fs.writeFile(path, bytes);

    await assert.rejects(openStorage(dir), (error: unknown) => {
      assert.ok(error instanceof StorageCorruptError);
      assert.equal(error.file, path);
      assert.equal(error.offset, 0);
      assert.match(error.message, /checksum mismatch/);
      return true;
    });
    assert.deepEqual(await fs.readFile(path), bytes, "nothing was changed");
  });

  test("hard state survives segment rolls and the deletion of old segments", async () => {
    const dir = await freshDir();
    const storage = await openStorage(dir, { segmentBytes: 256 });
    await storage.save({ entries: entries(1, 1, 1), hardState: { term: 1, vote: 1, commit: 1 } });
    for (let i = 2; i <= 40; i++) await storage.save({ entries: entries(i, i, 1) });
    assert.ok((await segmentFiles(dir)).length > 3, "the log rolled over several segments");
    const snapshot: Snapshot = {
      meta: { index: 39, term: 1, membership: { voters: [1], learners: [] } },
      data: new Uint8Array([1, 2, 3]),
    };
    await storage.saveSnapshot(snapshot);
    await storage.close();

    const reopened = await openStorage(dir);
    const state = reopened.restore();
    assert.deepEqual(state.hardState, { term: 1, vote: 1, commit: 1 });
    assert.deepEqual(state.snapshot?.meta, snapshot.meta);
    assert.deepEqual([...state.snapshot!.data], [1, 2, 3]);
    assert.deepEqual(summary(state.entries), ["40@1"]);
    await reopened.close();
  });

  test("compaction deletes the segments and snapshots it makes obsolete", async () => {
    const dir = await freshDir();
    const storage = await openStorage(dir, { segmentBytes: 200 });
    for (let i = 1; i <= 30; i++) await storage.save({ entries: entries(i, i, 1) });
    const before = await segmentFiles(dir);
    const membership = { voters: [1], learners: [] };
    await storage.saveSnapshot({
      meta: { index: 10, term: 1, membership },
      data: new Uint8Array([10]),
    });
    await storage.saveSnapshot({
      meta: { index: 25, term: 1, membership },
      data: new Uint8Array([25]),
    });
    const afterwards = await segmentFiles(dir);
    assert.ok(afterwards.length < before.length, `${afterwards.length} < ${before.length}`);
    assert.equal(afterwards.at(-1), before.at(-1), "the active segment stays");
    const snapshots = (await fs.readdir(dir)).filter((n) => n.endsWith(".snap"));
    assert.deepEqual(snapshots, ["snapshot-0000000000000025.snap"]);
    await storage.close();

    const state = await reopened(dir);
    assert.equal(state.snapshot?.meta.index, 25);
    assert.deepEqual(summary(state.entries), ["26@1", "27@1", "28@1", "29@1", "30@1"]);
  });

  test("an installed snapshot replaces the whole log", async () => {
    const dir = await freshDir();
    const storage = await openStorage(dir);
    await storage.save({ entries: entries(1, 8, 1) });
    const snapshot: Snapshot = {
      meta: { index: 5, term: 2, membership: { voters: [1, 2], learners: [3] } },
      data: new Uint8Array([5]),
    };
    await storage.save({ snapshot, entries: [], hardState: { term: 2, vote: 0, commit: 5 } });
    await storage.save({ entries: entries(6, 7, 2) });
    await storage.close();

    const state = await reopened(dir);
    assert.deepEqual(state.snapshot?.meta, snapshot.meta);
    assert.deepEqual(summary(state.entries), ["6@2", "7@2"]);
    assert.deepEqual(state.hardState, { term: 2, vote: 0, commit: 5 });
  });

  test("saves issued together share one fdatasync", async () => {
    const dir = await freshDir();
    let datasyncs = 0;
    const counting: StorageFs = {
      ...fs,
      fdatasyncSync: (fd) => {
        datasyncs++;
        fdatasyncSync(fd);
      },
    };
    const storage = await openStorage(dir, { fs: counting });
    const baseline = datasyncs;
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => storage.save({ entries: entries(i + 1, i + 1, 1) })),
    );
    assert.equal(datasyncs - baseline, 1);
    await storage.save({ entries: entries(21, 21, 1) });
    assert.equal(datasyncs - baseline, 2, "a lone save still syncs");
    const commitOnly = { term: 1, vote: 1, commit: 21 };
    await storage.save({ entries: [], hardState: commitOnly }, { sync: false });
    assert.equal(datasyncs - baseline, 2, "an unsynced save is only written");
    await storage.close();
    const state = await reopened(dir);
    assert.equal(state.entries.length, 21);
    assert.deepEqual(state.hardState, commitOnly);
  });
});
