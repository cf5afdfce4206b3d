/**
 * Durable Raft storage: an append-only log in segment files plus snapshot files, in one directory.
 * Owns: the directory's files, group commit (saves issued in one turn share one fdatasync),
 * crash recovery on open. Must not touch: Raft decisions (it stores what the core hands it).
 *
 * Layout: `segment-<seq>.log` (records, see records.ts; a new segment starts at `segmentBytes`
 * and opens with the current hard state, so the newest segment always holds the latest one)
 * and `snapshot-<index>.snap` (one record, written to a temp file, fsynced, renamed, directory
 * fsynced). Truncation is a property of entry records, never a rewrite.
 *
 * Storage never deletes what it cannot yet replace. Once a new snapshot is durable, the older
 * snapshots are deleted and the directory fsynced, and only then every segment (but the active
 * one) holding only entries at or below the new index. So on disk, every snapshot has the log
 * after it, up to a snapshot a reset record installed over it: a crash between the steps leaves
 * an older snapshot whose log is still complete. Opening deletes no snapshot (only unfinished
 * temp files): an older one stays until the next snapshot is durable. A newest snapshot that
 * cannot be read (or restored, the driver finds) is set aside as
 * `snapshot-<index>.snap.set-aside[-n]`, kept for forensics. If an older snapshot decodes and
 * the log continues it, the node opens from that one with its log (fallBackToOlderSnapshot);
 * otherwise the log that depended on the newest is discarded (setAsideSnapshot).
 */

import { fdatasyncSync, promises as nodeFsPromises, writeSync } from "node:fs";
import type * as fsp from "node:fs/promises";
import { join } from "node:path";
import { concatBytes } from "../../shared/bytes.ts";
import type { RaftRestore } from "../core.ts";
import type { Entry, HardState, Snapshot, SnapshotMeta } from "../types.ts";
import {
  decodeLogRecord,
  decodeSnapshotFile,
  encodeLogRecord,
  encodeSnapshotFile,
  RECORD_HEADER_BYTES,
  StorageCorruptError,
  scanRecords,
} from "./records.ts";

/** The file operations storage uses; injectable so tests can count and fail syncs. */
export type StorageFs = Pick<
  typeof fsp,
  "open" | "readdir" | "readFile" | "rename" | "unlink" | "mkdir" | "chmod" | "truncate"
> & {
  /** Syncs the log on the calling thread (see SegmentedStorage.flush for why). */
  readonly fdatasyncSync: (fd: number) => void;
};

const nodeFs: StorageFs = { ...nodeFsPromises, fdatasyncSync };

export interface StorageOptions {
  /** A segment is closed and a new one started once it reaches this size. Default 64 MiB. */
  readonly segmentBytes?: number;
  readonly fs?: StorageFs;
  /** Receives the one-line warning about a torn tail repaired on open. */
  readonly warn?: (message: string) => void;
}

/** The persistent part of a Ready (a Ready itself fits). */
export interface PersistPart {
  readonly hardState?: HardState;
  readonly entries: readonly Entry[];
  /** A snapshot received from the leader: it replaces the whole log. */
  readonly snapshot?: Snapshot;
}

/** The newest snapshot file could not be read: why, and what else the storage holds. */
export interface UnreadableSnapshot {
  readonly index: number;
  readonly reason: string;
  readonly hardState: HardState;
  /** The log after the snapshot's index. */
  readonly entries: readonly Entry[];
}

/** The state an older snapshot and the log after it hold, and the newer snapshots set aside. */
export interface FallBack {
  readonly restored: RaftRestore & { readonly snapshot: Snapshot };
  /** Where the newer snapshot files went, newest first. */
  readonly setAside: readonly string[];
}

/**
 * A node's durable Raft state. It never deletes what it cannot yet replace: on disk, every
 * snapshot has the log after it (up to one installed over it), and a snapshot goes only once a
 * newer one is durable (see the file header for the order of the steps).
 */
export interface RaftStorage {
  /**
   * The state found on disk when the storage was opened. Throws StorageCorruptError when the
   * newest snapshot could not be read (see unreadableSnapshot).
   */
  restore(): RaftRestore;
  /** Set when the newest snapshot file could not be read (damaged, or another version's format). */
  unreadableSnapshot(): UnreadableSnapshot | undefined;
  /**
   * For a newest snapshot that cannot be read or restored: finds the newest older snapshot file
   * that decodes and that the log on disk continues (its entries go on from the snapshot's
   * index + 1 without a gap, their terms never go back, no snapshot was installed over it, and
   * the commit index is within them). If there is one, renames every newer snapshot file aside
   * (kept for forensics) and resolves, once durable, with their paths and the state from it,
   * log and hard state kept; restore() returns that state from then on. Otherwise changes
   * nothing and resolves undefined. Only before the first save.
   */
  fallBackToOlderSnapshot(): Promise<FallBack | undefined>;
  /**
   * Renames every snapshot file aside (kept for forensics) and discards the whole log, so that
   * `hardState` is all that is left; resolves with the newest set-aside file's path once
   * durable. Only before the first save, and only once fallBackToOlderSnapshot found nothing.
   */
  setAsideSnapshot(hardState: HardState): Promise<string>;
  /**
   * Persists a Ready's snapshot, entries and hard state; resolves once fdatasync returned.
   * With `sync: false` (for what peers can restore, like a commit index) the record is only
   * written; it becomes durable with the next synced save.
   */
  save(part: PersistPart, options?: { readonly sync?: boolean }): Promise<void>;
  /** Persists a snapshot taken locally (compaction) and deletes what it makes obsolete. */
  saveSnapshot(snapshot: Snapshot): Promise<void>;
  close(): Promise<void>;
}

const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
const SEGMENT_NAME = /^segment-(\d{10})\.log$/;
const SNAPSHOT_NAME = /^snapshot-(\d{16})\.snap$/;
const EMPTY_HARD_STATE: HardState = { term: 0, vote: 0, commit: 0 };

const segmentName = (seq: number) => `segment-${String(seq).padStart(10, "0")}.log`;
const snapshotName = (index: number) => `snapshot-${String(index).padStart(16, "0")}.snap`;

interface Segment {
  readonly seq: number;
  readonly path: string;
  /** The highest entry index written into this segment (0: none). */
  maxIndex: number;
}

interface PendingSave {
  readonly record: Uint8Array;
  readonly snapshot?: Snapshot;
  readonly hardState?: HardState;
  readonly maxIndex: number;
  readonly sync: boolean;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/** Opens (creating if needed) the storage in `dir`, recovering a torn tail with a warning. */
export async function openStorage(dir: string, options: StorageOptions = {}): Promise<RaftStorage> {
  const fs = options.fs ?? nodeFs;
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.chmod(dir, 0o700);
  const names = await fs.readdir(dir);
  for (const name of names.filter((n) => n.endsWith(".tmp"))) await fs.unlink(join(dir, name));

  const snapshotIndexes = indexesOf(names, SNAPSHOT_NAME);
  const newestSnapshot = snapshotIndexes.at(-1) ?? 0;
  let snapshot: Snapshot | undefined;
  let unreadable: StorageCorruptError | undefined;
  if (newestSnapshot > 0) {
    const read = await readSnapshot(fs, dir, newestSnapshot);
    if (read instanceof StorageCorruptError) unreadable = read;
    else snapshot = read;
  }

  const segments = indexesOf(names, SEGMENT_NAME).map((seq) => ({
    seq,
    path: join(dir, segmentName(seq)),
    maxIndex: 0,
  }));
  const { replay, torn } = await readLog(fs, segments, newestSnapshot);
  if (torn) {
    (options.warn ?? console.warn)(
      `raft storage: ${torn.path}: dropped a torn tail of ${torn.bytes - torn.validBytes} bytes at byte ${torn.validBytes} (${torn.reason}); it was never acknowledged`,
    );
    await fs.truncate(torn.path, torn.validBytes);
  }
  const restored = { hardState: replay.hardState, snapshot, entries: replay.entries };
  const storage = new SegmentedStorage(
    dir,
    fs,
    options.segmentBytes ?? DEFAULT_SEGMENT_BYTES,
    restored,
    unreadable && {
      index: newestSnapshot,
      reason: unreadable.reason,
      ...restored,
      error: unreadable,
    },
  );
  await storage.openActive(segments, snapshotIndexes);
  return storage;
}

/** The snapshot file at `index`, or why it cannot be read. */
async function readSnapshot(
  fs: StorageFs,
  dir: string,
  index: number,
): Promise<Snapshot | StorageCorruptError> {
  const path = join(dir, snapshotName(index));
  try {
    const snapshot = decodeSnapshotFile(await fs.readFile(path), path);
    if (snapshot.meta.index !== index) {
      throw new StorageCorruptError(path, 0, `it holds index ${snapshot.meta.index}`);
    }
    return snapshot;
  } catch (error) {
    if (error instanceof StorageCorruptError) return error;
    throw error;
  }
}

interface TornTail {
  readonly path: string;
  readonly bytes: number;
  readonly validBytes: number;
  readonly reason: string;
}

/**
 * Replays the segments' records, in order, on top of a snapshot at index `base`, and sets each
 * segment's maxIndex. Only the last segment's tail may be torn: it is reported, not repaired.
 */
async function readLog(
  fs: StorageFs,
  segments: readonly Segment[],
  base: number,
): Promise<{ replay: Replay; torn?: TornTail }> {
  const replay = new Replay(base);
  let torn: TornTail | undefined;
  for (const [i, segment] of segments.entries()) {
    const bytes = await fs.readFile(segment.path);
    const scan = scanRecords(bytes, segment.path, i === segments.length - 1);
    segment.maxIndex = 0;
    let offset = 0;
    for (const payload of scan.payloads) {
      const record = decodeLogRecord(payload, segment.path, offset);
      segment.maxIndex = Math.max(segment.maxIndex, replay.apply(record, segment.path, offset));
      offset += RECORD_HEADER_BYTES + payload.length;
    }
    if (scan.tornReason) {
      const { validBytes, tornReason: reason } = scan;
      torn = { path: segment.path, bytes: bytes.length, validBytes, reason };
    }
  }
  return torn ? { replay, torn } : { replay };
}

/**
 * Whether the log replayed onto a snapshot at `meta` continues it. Replay already refused a gap
 * and a snapshot installed over it; here the terms must never go back (from the snapshot's on),
 * and the commit index must be within the log.
 */
function logContinues(
  meta: Pick<SnapshotMeta, "index" | "term">,
  log: Pick<RaftRestore, "hardState" | "entries">,
): boolean {
  let term = meta.term;
  for (const entry of log.entries) {
    if (entry.term < term) return false;
    term = entry.term;
  }
  return log.hardState.commit <= meta.index + log.entries.length;
}

function indexesOf(names: readonly string[], pattern: RegExp): number[] {
  return names
    .map((name) => pattern.exec(name)?.[1])
    .filter((n): n is string => n !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
}

/** Rebuilds the log from records, in order, on top of the newest snapshot (at index `base`). */
class Replay {
  hardState: HardState = EMPTY_HARD_STATE;
  readonly entries: Entry[] = [];

  constructor(private readonly base: number) {}

  /** Applies one record; returns the highest entry index it carried. */
  apply(record: ReturnType<typeof decodeLogRecord>, file: string, offset: number): number {
    if (record.reset) {
      if (record.reset.index > this.base) {
        throw new StorageCorruptError(
          file,
          offset,
          `the log installed a snapshot at index ${record.reset.index} but the newest snapshot file is at ${this.base}`,
        );
      }
      this.entries.length = 0;
    }
    const first = record.entries[0];
    if (first) {
      const next = this.base + this.entries.length + 1;
      if (first.index > next) {
        throw new StorageCorruptError(
          file,
          offset,
          `entry ${first.index} follows entry ${next - 1}: a gap`,
        );
      }
      this.entries.length = Math.max(0, first.index - this.base - 1);
      for (const entry of record.entries) if (entry.index > this.base) this.entries.push(entry);
    }
    if (record.hardState) this.hardState = record.hardState;
    return record.entries.at(-1)?.index ?? 0;
  }
}

class SegmentedStorage implements RaftStorage {
  private segments: Segment[] = [];
  private active!: fsp.FileHandle;
  private activeBytes = 0;
  private snapshotIndexes: number[] = [];
  private hardState: HardState;
  private pending: PendingSave[] = [];
  private flushScheduled = false;
  private flushing: Promise<void> = Promise.resolve();
  private failure: unknown;
  private closed = false;
  private tempCounter = 0;

  constructor(
    private readonly dir: string,
    private readonly fs: StorageFs,
    private readonly segmentBytes: number,
    private restored: RaftRestore,
    private unreadable: (UnreadableSnapshot & { readonly error: StorageCorruptError }) | undefined,
  ) {
    this.hardState = restored.hardState;
  }

  async openActive(segments: Segment[], snapshotIndexes: number[]): Promise<void> {
    this.segments = segments;
    this.snapshotIndexes = snapshotIndexes;
    const last = segments.at(-1);
    if (last) {
      this.active = await this.fs.open(last.path, "a", 0o600);
      this.activeBytes = (await this.active.stat()).size;
    } else {
      await this.startSegment(1, new Uint8Array(0));
    }
  }

  restore(): RaftRestore {
    if (this.unreadable) throw this.unreadable.error;
    return this.restored;
  }

  unreadableSnapshot(): UnreadableSnapshot | undefined {
    return this.unreadable;
  }

  async fallBackToOlderSnapshot(): Promise<FallBack | undefined> {
    const older = this.snapshotIndexes.slice(0, -1).reverse();
    for (const index of older) {
      const snapshot = await readSnapshot(this.fs, this.dir, index);
      if (snapshot instanceof StorageCorruptError) continue;
      let replay: Replay;
      try {
        ({ replay } = await readLog(this.fs, this.segments, index));
      } catch (error) {
        // A gap after the snapshot, or one installed over it: this log does not continue it.
        if (error instanceof StorageCorruptError) continue;
        throw error;
      }
      const restored = { hardState: replay.hardState, snapshot, entries: replay.entries };
      if (!logContinues(snapshot.meta, restored)) continue;
      const setAside: string[] = [];
      const newer = this.snapshotIndexes.filter((n) => n > index).reverse();
      for (const aside of newer) setAside.push(await this.renameAside(aside));
      await this.syncDir();
      this.snapshotIndexes = this.snapshotIndexes.filter((n) => n <= index);
      this.restored = restored;
      this.unreadable = undefined;
      return { restored, setAside };
    }
    return undefined;
  }

  /**
   * Durable in four steps, each of which a crash may interrupt: the older snapshots renamed
   * aside (none is continued by the log, or fallBackToOlderSnapshot would have opened from it);
   * a new segment that starts with `hardState` and a reset of the log; the old segments
   * deleted, newest first (what is left is a prefix of the old log, then the reset); the newest
   * snapshot renamed. Until that last rename, a restart finds the same snapshot, no older one
   * that serves, and a log that is the old one or empty with this hard state: it sets it aside
   * again.
   */
  async setAsideSnapshot(hardState: HardState): Promise<string> {
    const index = this.snapshotIndexes.at(-1);
    if (index === undefined) throw new Error("raft storage: there is no snapshot to set aside");
    for (const older of this.snapshotIndexes.slice(0, -1)) await this.renameAside(older);
    const old = [...this.segments];
    this.hardState = hardState;
    const reset = encodeLogRecord({ reset: { index: 0, term: 0 }, entries: [] });
    await this.startSegment(old.at(-1)!.seq + 1, reset);
    this.segments = this.segments.slice(old.length);
    for (const segment of old.reverse()) await this.fs.unlink(segment.path);
    const path = await this.renameAside(index);
    await this.syncDir();
    this.snapshotIndexes = [];
    return path;
  }

  /** Renames snapshot `index` to a set-aside name no earlier one took; returns the new path. */
  private async renameAside(index: number): Promise<string> {
    const names = new Set(await this.fs.readdir(this.dir));
    let aside = `${snapshotName(index)}.set-aside`;
    for (let n = 2; names.has(aside); n++) aside = `${snapshotName(index)}.set-aside-${n}`;
    const path = join(this.dir, aside);
    await this.fs.rename(join(this.dir, snapshotName(index)), path);
    return path;
  }

  save(part: PersistPart, options: { readonly sync?: boolean } = {}): Promise<void> {
    if (this.closed) return Promise.reject(new Error("raft storage is closed"));
    if (this.failure) return Promise.reject(this.failure);
    if (!part.hardState && part.entries.length === 0 && !part.snapshot) return Promise.resolve();
    const snapshot = part.snapshot;
    const record = encodeLogRecord({
      reset: snapshot ? { index: snapshot.meta.index, term: snapshot.meta.term } : undefined,
      entries: part.entries,
      hardState: part.hardState,
    });
    return new Promise((resolve, reject) => {
      this.pending.push({
        record,
        snapshot,
        hardState: part.hardState,
        maxIndex: part.entries.at(-1)?.index ?? 0,
        sync: options.sync ?? true,
        resolve,
        reject,
      });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // The flush starts after this turn (and after any running flush), so every save
        // issued meanwhile joins one batch: one write, one fdatasync.
        this.flushing = this.flushing.then(() => this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    this.flushScheduled = false;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    try {
      if (this.failure) throw this.failure;
      for (const save of batch) if (save.snapshot) await this.writeSnapshotFile(save.snapshot);
      const bytes = concatBytes(batch.map((s) => s.record));
      if (this.activeBytes >= this.segmentBytes) {
        await this.startSegment(this.segments.at(-1)!.seq + 1, bytes);
      } else {
        // A synchronous write only copies into the page cache; it saves a thread-pool round trip.
        writeAllSync(this.active.fd, bytes);
        this.activeBytes += bytes.length;
        // On the event loop, not the thread pool: the Ready loop waits for this sync anyway, and a
        // thread-pool round trip adds two thread wake-ups to every commit's critical path, which
        // on a busy machine cost more than the sync itself (a leader's p99 save fell from 3.4 to
        // 2.0 ms, three nodes on loopback at concurrency 1). The leader's appends are on the wire
        // before this point.
        if (batch.some((save) => save.sync)) this.fs.fdatasyncSync(this.active.fd);
      }
      const segment = this.segments.at(-1)!;
      for (const save of batch) {
        segment.maxIndex = Math.max(segment.maxIndex, save.maxIndex);
        if (save.hardState) this.hardState = save.hardState;
        if (save.snapshot) await this.deleteSegmentsUpTo(save.snapshot.meta.index);
      }
    } catch (error) {
      // The file's tail is unknown now: refuse every later write rather than guess.
      this.failure ??= error;
      for (const save of batch) save.reject(error);
      return;
    }
    for (const save of batch) save.resolve();
  }

  /** Starts segment `seq` with the current hard state followed by `bytes`, durably. */
  private async startSegment(seq: number, bytes: Uint8Array): Promise<void> {
    const path = join(this.dir, segmentName(seq));
    const handle = await this.fs.open(path, "wx", 0o600);
    const head =
      this.hardState === EMPTY_HARD_STATE
        ? new Uint8Array(0)
        : encodeLogRecord({ entries: [], hardState: this.hardState });
    const content = concatBytes([head, bytes]);
    await writeAll(handle, content);
    await handle.datasync();
    await this.syncDir();
    const previous = this.active;
    this.active = handle;
    this.activeBytes = content.length;
    this.segments.push({ seq, path, maxIndex: 0 });
    await previous?.close();
  }

  async saveSnapshot(snapshot: Snapshot): Promise<void> {
    if (this.closed) throw new Error("raft storage is closed");
    await this.writeSnapshotFile(snapshot);
    await this.deleteSegmentsUpTo(snapshot.meta.index);
  }

  /** Deletes the oldest segments while they hold nothing after `index` (never the active one). */
  private async deleteSegmentsUpTo(index: number): Promise<void> {
    while (this.segments.length > 1 && this.segments[0]!.maxIndex <= index) {
      await this.fs.unlink(this.segments.shift()!.path);
    }
  }

  private async writeSnapshotFile(snapshot: Snapshot): Promise<void> {
    const index = snapshot.meta.index;
    const path = join(this.dir, snapshotName(index));
    const temp = `${path}.${++this.tempCounter}.tmp`;
    const handle = await this.fs.open(temp, "w", 0o600);
    try {
      await writeAll(handle, encodeSnapshotFile(snapshot));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await this.fs.rename(temp, path);
    await this.syncDir();
    const obsolete = this.snapshotIndexes.filter((i) => i < index);
    this.snapshotIndexes = [...this.snapshotIndexes.filter((i) => i > index), index].sort(
      (a, b) => a - b,
    );
    if (obsolete.length === 0) return;
    for (const old of obsolete) await this.fs.unlink(join(this.dir, snapshotName(old)));
    // Before any segment goes: an older snapshot a crash leaves must find its log complete.
    await this.syncDir();
  }

  private async syncDir(): Promise<void> {
    const handle = await this.fs.open(this.dir, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flushing;
    await this.active.close();
  }
}

function writeAllSync(fd: number, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += writeSync(fd, bytes, offset, bytes.length - offset);
}

async function writeAll(handle: fsp.FileHandle, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset);
    offset += bytesWritten;
  }
}
