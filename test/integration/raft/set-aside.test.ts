/**
 * A snapshot file that cannot be read is reported by storage (not thrown at open), and
 * setAsideSnapshot renames it aside and discards the log that depended on it, durably, in steps
 * that a crash may interrupt anywhere and still leave storage that opens. Unless an older
 * snapshot on disk serves: storage keeps older snapshots until a newer one is durable, and
 * fallBackToOlderSnapshot opens from one the log continues, keeping the log.
 */
import assert from "node:assert/strict";
import { fdatasyncSync, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, describe, test } from "node:test";
import { encode } from "cbor-x";
import { frameRecord, StorageCorruptError } from "../../../lib/raft/storage/records.ts";
import { openStorage, type StorageFs } from "../../../lib/raft/storage/storage.ts";
import type { Entry, HardState } from "../../../lib/raft/types.ts";

const roots: string[] = [];
after(() => Promise.all(roots.map((r) => fs.rm(r, { recursive: true, force: true }))));

const SNAP = "snapshot-0000000000000008.snap";
const membership = { voters: [1, 2, 3], learners: [] };

function entries(from: number, to: number, term: number): Entry[] {
  return Array.from({ length: to - from + 1 }, (_, i) => ({
    index: from + i,
    term,
    kind: "command" as const,
    data: new TextEncoder().encode(`cmd-${from + i}`),
  }));
}

/** Storage holding entries 1-12 of term 2 and a snapshot at 8, closed. */
async function withSnapshotAt8(): Promise<string> {
  const root = await fs.mkdtemp(join(tmpdir(), "mill-set-aside-"));
  roots.push(root);
  const dir = join(root, "raft");
  const storage = await openStorage(dir, { segmentBytes: 200 });
  await storage.save({ entries: entries(1, 10, 2), hardState: { term: 3, vote: 2, commit: 10 } });
  await storage.saveSnapshot({ meta: { index: 8, term: 2, membership }, data: encode(["s"]) });
  await storage.save({ entries: entries(11, 12, 2) });
  await storage.close();
  return dir;
}

async function damage(dir: string): Promise<Buffer> {
  const bytes = await fs.readFile(join(dir, SNAP));
  bytes[bytes.length - 1]! ^= 0xff;
  await fs.writeFile(join(dir, SNAP), bytes);
  return bytes;
}

const recovering: HardState = { term: 3, vote: 2, commit: 0, recovering: { term: 3, index: 8 } };
const summary = (es: readonly Entry[]) => es.map((e) => `${e.index}@${e.term}`);

describe("raft storage: an unreadable snapshot", () => {
  test("is reported with the log after it, and restore() refuses", async () => {
    const dir = await withSnapshotAt8();
    await damage(dir);
    const storage = await openStorage(dir);
    const unreadable = storage.unreadableSnapshot();
    assert.equal(unreadable?.index, 8);
    assert.match(unreadable?.reason ?? "", /checksum mismatch/);
    assert.deepEqual(unreadable?.hardState, { term: 3, vote: 2, commit: 10 });
    assert.deepEqual(summary(unreadable?.entries ?? []), ["9@2", "10@2", "11@2", "12@2"]);
    assert.throws(() => storage.restore(), StorageCorruptError);
    await storage.close();
  });

  test("planted files get the checks a received snapshot gets, and must hold their own index", async () => {
    const dir = await withSnapshotAt8();
    const plant = (meta: unknown) =>
      fs.writeFile(join(dir, SNAP), frameRecord(encode({ meta, data: new Uint8Array([1]) })));
    await plant({ index: 8, term: 2, membership: { voters: ["x"], learners: [] } });
    let storage = await openStorage(dir);
    assert.match(storage.unreadableSnapshot()?.reason ?? "", /lacks a valid meta or data/);
    await storage.close();
    await plant({ index: 9, term: 2, membership });
    storage = await openStorage(dir);
    assert.equal(storage.unreadableSnapshot()?.reason, "it holds index 9");
    await storage.close();
  });

  test("is set aside, kept byte for byte, and the log is discarded for the hard state given", async () => {
    const dir = await withSnapshotAt8();
    const damaged = await damage(dir);
    const storage = await openStorage(dir);
    const path = await storage.setAsideSnapshot(recovering);
    assert.equal(path, join(dir, `${SNAP}.set-aside`));
    assert.deepEqual(await fs.readFile(path), damaged);
    await storage.save({ entries: entries(1, 3, 3) });
    await storage.close();

    const reopened = await openStorage(dir);
    assert.equal(reopened.unreadableSnapshot(), undefined);
    assert.deepEqual(reopened.restore().hardState, recovering, "the catch-up point persists");
    assert.deepEqual(summary(reopened.restore().entries), ["1@3", "2@3", "3@3"]);
    assert.equal((await fs.readdir(dir)).filter((n) => n.endsWith(".log")).length, 1);
    // Caught up: the point is cleared by the next hard state saved.
    await reopened.save({ entries: [], hardState: { term: 3, vote: 2, commit: 3 } });
    await reopened.close();
    const third = await openStorage(dir);
    assert.deepEqual(third.restore().hardState, { term: 3, vote: 2, commit: 3 });
    await third.close();
  });

  for (const [step, failing] of [
    ["deleting the old segments", "unlink"],
    ["renaming the snapshot", "rename"],
  ] as const) {
    test(`a crash while ${step} leaves storage that opens and sets it aside again`, async () => {
      const dir = await withSnapshotAt8();
      await damage(dir);
      const crash: StorageFs = {
        ...fs,
        fdatasyncSync: () => {},
        [failing]: async () => {
          throw new Error("crash");
        },
      };
      const storage = await openStorage(dir, { fs: crash });
      await assert.rejects(storage.setAsideSnapshot(recovering), /crash/);
      await storage.close().catch(() => {});

      const again = await openStorage(dir);
      const unreadable = again.unreadableSnapshot();
      assert.equal(unreadable?.index, 8, "the snapshot is still there");
      assert.deepEqual(unreadable?.hardState, recovering, "with the new hard state");
      assert.deepEqual(unreadable?.entries, [], "and the log already discarded");
      await again.setAsideSnapshot(recovering);
      await again.close();
      const last = await openStorage(dir);
      assert.deepEqual(last.restore(), { hardState: recovering, snapshot: undefined, entries: [] });
      await last.close();
    });
  }

  test("a second snapshot set aside at the same index gets a name of its own", async () => {
    const dir = await withSnapshotAt8();
    await fs.writeFile(join(dir, `${SNAP}.set-aside`), "earlier");
    await damage(dir);
    const storage = await openStorage(dir);
    assert.equal(await storage.setAsideSnapshot(recovering), join(dir, `${SNAP}.set-aside-2`));
    assert.equal(await fs.readFile(join(dir, `${SNAP}.set-aside`), "utf8"), "earlier");
    await storage.close();
  });
});

const snapName = (index: number) => `snapshot-${String(index).padStart(16, "0")}.snap`;
const snapshotFiles = async (dir: string) =>
  (await fs.readdir(dir)).filter((name) => name.includes(".snap")).sort();
/** A file named as the snapshot at `index` that is not one. */
const plant = (dir: string, index: number) => fs.writeFile(join(dir, snapName(index)), "planted");

describe("raft storage: an older snapshot the log continues", () => {
  for (const [where, index] of [
    ["within the log", 10],
    ["past the log's end", 40],
  ] as const) {
    test(`a planted newest file ${where} is set aside and storage opens from the older one, log kept`, async () => {
      const dir = await withSnapshotAt8();
      await plant(dir, index);
      const storage = await openStorage(dir);
      assert.equal(storage.unreadableSnapshot()?.index, index);
      assert.ok((await snapshotFiles(dir)).includes(SNAP), "opening deleted nothing");
      const older = await storage.fallBackToOlderSnapshot();
      assert.deepEqual(older?.setAside, [join(dir, `${snapName(index)}.set-aside`)]);
      assert.equal(older?.restored.snapshot.meta.index, 8);
      assert.deepEqual(summary(older?.restored.entries ?? []), ["9@2", "10@2", "11@2", "12@2"]);
      assert.deepEqual(older?.restored.hardState, { term: 3, vote: 2, commit: 10 });
      assert.equal(storage.unreadableSnapshot(), undefined);
      assert.deepEqual(storage.restore(), older?.restored);
      await storage.save({ entries: entries(13, 13, 3) });
      await storage.close();

      const reopened = await openStorage(dir);
      assert.equal(reopened.unreadableSnapshot(), undefined);
      assert.equal(reopened.restore().snapshot?.meta.index, 8);
      assert.deepEqual(summary(reopened.restore().entries), [
        "9@2",
        "10@2",
        "11@2",
        "12@2",
        "13@3",
      ]);
      assert.equal(
        await fs.readFile(join(dir, `${snapName(index)}.set-aside`), "utf8"),
        "planted",
        "kept for forensics",
      );
      await reopened.close();
    });
  }

  test("a crash between writing a new snapshot and deleting the old one keeps both, and the older serves if the newer is damaged", async () => {
    const dir = await withSnapshotAt8();
    const crash: StorageFs = {
      ...fs,
      fdatasyncSync,
      unlink: async () => {
        throw new Error("crash");
      },
    };
    const storage = await openStorage(dir, { fs: crash });
    await assert.rejects(
      storage.saveSnapshot({ meta: { index: 11, term: 2, membership }, data: encode(["t"]) }),
      /crash/,
    );
    await storage.close();
    assert.deepEqual(await snapshotFiles(dir), [SNAP, snapName(11)]);

    // The newer one is durable and serves; the older stays (opening deletes nothing).
    let reopened = await openStorage(dir);
    assert.equal(reopened.restore().snapshot?.meta.index, 11);
    assert.deepEqual(summary(reopened.restore().entries), ["12@2"]);
    await reopened.close();
    assert.deepEqual(await snapshotFiles(dir), [SNAP, snapName(11)]);

    const bytes = await fs.readFile(join(dir, snapName(11)));
    bytes[bytes.length - 1]! ^= 0xff;
    await fs.writeFile(join(dir, snapName(11)), bytes);
    reopened = await openStorage(dir);
    assert.match(reopened.unreadableSnapshot()?.reason ?? "", /checksum mismatch/);
    const older = await reopened.fallBackToOlderSnapshot();
    assert.equal(older?.restored.snapshot.meta.index, 8);
    assert.deepEqual(summary(older?.restored.entries ?? []), ["9@2", "10@2", "11@2", "12@2"]);
    // The next snapshot made durable deletes every older one, the set-aside file aside.
    await reopened.saveSnapshot({ meta: { index: 12, term: 2, membership }, data: encode(["u"]) });
    await reopened.close();
    assert.deepEqual(await snapshotFiles(dir), [`${snapName(11)}.set-aside`, snapName(12)]);
  });

  test("an older snapshot's deletion is durable before any segment the new one makes obsolete goes", async () => {
    const dir = await withSnapshotAt8();
    const events: string[] = [];
    const recording: StorageFs = {
      ...fs,
      fdatasyncSync,
      unlink: async (path) => {
        events.push(`unlink ${basename(String(path))}`);
        await fs.unlink(path);
      },
      open: (async (path: string, flags?: string, mode?: number) => {
        const handle = await fs.open(path, flags, mode);
        if (path !== dir) return handle;
        const sync = handle.sync.bind(handle);
        handle.sync = async () => {
          events.push("sync dir");
          await sync();
        };
        return handle;
      }) as StorageFs["open"],
    };
    const storage = await openStorage(dir, { fs: recording, segmentBytes: 200 });
    for (let index = 13; index <= 30; index++)
      await storage.save({ entries: entries(index, index, 2) });
    events.length = 0;
    await storage.saveSnapshot({ meta: { index: 28, term: 2, membership }, data: encode(["t"]) });
    await storage.close();
    const snapshotGone = events.indexOf(`unlink ${SNAP}`);
    const firstSegment = events.findIndex((event) => event.startsWith("unlink segment-"));
    assert.ok(snapshotGone >= 0 && firstSegment > snapshotGone, events.join(", "));
    assert.ok(events.slice(snapshotGone, firstSegment).includes("sync dir"), events.join(", "));
  });

  const breaks: [string, (dir: string) => Promise<void>][] = [
    [
      "a snapshot was installed over the older one",
      async (dir) => {
        const older = await fs.readFile(join(dir, SNAP));
        const storage = await openStorage(dir);
        const installed = { meta: { index: 20, term: 3, membership }, data: encode(["i"]) };
        await storage.save({
          snapshot: installed,
          entries: [],
          hardState: { term: 3, vote: 2, commit: 20 },
        });
        await storage.close();
        await fs.writeFile(join(dir, SNAP), older);
        await plant(dir, 20);
      },
    ],
    [
      "the log's terms go back from the older snapshot's",
      async (dir) => {
        await fs.writeFile(
          join(dir, SNAP),
          frameRecord(encode({ meta: { index: 8, term: 5, membership }, data: encode(["s"]) })),
        );
        await plant(dir, 10);
      },
    ],
    [
      "the commit index is past the log's end",
      async (dir) => {
        const storage = await openStorage(dir);
        await storage.save({ entries: [], hardState: { term: 3, vote: 2, commit: 30 } });
        await storage.close();
        await plant(dir, 10);
      },
    ],
  ];
  for (const [why, arrange] of breaks) {
    test(`nothing to fall back to when ${why}: nothing changes, and the set-aside path loses the log`, async () => {
      const dir = await withSnapshotAt8();
      await arrange(dir);
      const before = await snapshotFiles(dir);
      const storage = await openStorage(dir);
      const unreadable = storage.unreadableSnapshot();
      assert.ok(unreadable);
      assert.equal(await storage.fallBackToOlderSnapshot(), undefined);
      assert.deepEqual(await snapshotFiles(dir), before, "nothing was renamed");
      assert.deepEqual(storage.unreadableSnapshot(), unreadable);
      await storage.setAsideSnapshot(recovering);
      await storage.close();
      assert.ok(
        (await snapshotFiles(dir)).every((name) => name.includes(".set-aside")),
        "every snapshot went aside",
      );
      const last = await openStorage(dir);
      assert.deepEqual(last.restore(), { hardState: recovering, snapshot: undefined, entries: [] });
      await last.close();
    });
  }
});
