/**
 * One node's simulated durable storage, behind the same RaftStorage interface the driver uses
 * on real disks. A save writes its records at once (the page cache) and resolves when a later
 * flush event syncs them (fdatasync), after a random virtual latency; saves issued meanwhile
 * share that flush (group commit), and other events run while it is pending. A crash loses what
 * was not synced; it may also let a prefix of the unsynced records survive (the OS flushed them)
 * and tear the record after them, which a restart then discards. A node armed to crash at its
 * next sync dies when that flush would complete, so nothing waiting for it ever resumes.
 * Owns: records and their durability. Must not touch: the driver, the network.
 */

import type { RaftRestore } from "../../lib/raft/core.ts";
import type {
  FallBack,
  PersistPart,
  RaftStorage,
  UnreadableSnapshot,
} from "../../lib/raft/storage/storage.ts";
import type { Entry, HardState, Snapshot } from "../../lib/raft/types.ts";
import type { Owner, SimScheduler } from "./clock.ts";
import type { Prng } from "./prng.ts";

export type DiskRecord =
  /** A snapshot received from the leader (Ready.snapshot): it replaces the whole log. */
  | { readonly kind: "snapshot"; readonly snapshot: Snapshot }
  /** A snapshot taken locally: it replaces the log up to its index and keeps what follows. */
  | { readonly kind: "compaction"; readonly snapshot: Snapshot }
  | { readonly kind: "entries"; readonly entries: readonly Entry[] }
  | { readonly kind: "hardState"; readonly hardState: HardState };

/** What a crash does to the records written since the last sync. */
export type CrashMode =
  /** All of them are lost. */
  | "loseUnsynced"
  /** A random prefix survives; the record after it is torn and discarded on restart. */
  | "tearUnsynced";

export interface DiskState {
  hardState: HardState;
  snapshot?: Snapshot;
  /** The log after the snapshot, in index order, without gaps. */
  entries: Entry[];
}

export interface DiskStats {
  records: number;
  syncs: number;
  lostRecords: number;
  tornRecords: number;
}

export const EMPTY_HARD_STATE: HardState = { term: 0, vote: 0, commit: 0 };

/** How a snapshot on disk is damaged: its file cannot be read, or its state cannot be restored. */
export type SnapshotDamage = "unreadable" | "unrestorable";

/** A bad snapshot file put next to the node's own, at a higher index: the newest on disk. */
export interface PlantedSnapshot {
  readonly index: number;
  readonly how: SnapshotDamage;
}

const DAMAGED = new TextEncoder().encode("damaged");

export class SimDisk {
  /** What a restart would read back. */
  private synced: DiskState;
  /** How the durable snapshot is damaged, until the driver sets it aside. */
  private damage: SnapshotDamage | undefined;
  /** A bad newer snapshot file, until the driver sets it aside. */
  private planted: PlantedSnapshot | undefined;
  /** The indexes of the snapshots the driver set aside, oldest first. */
  readonly setAside: number[] = [];
  /** What the node wrote, synced or not: the log as the running node knows it. */
  private written: DiskState;
  private unsynced: DiskRecord[] = [];
  readonly stats: DiskStats = { records: 0, syncs: 0, lostRecords: 0, tornRecords: 0 };

  constructor(initial: RaftRestore) {
    this.synced = copyState(initial);
    this.written = copyState(initial);
  }

  get state(): Readonly<DiskState> {
    return this.written;
  }

  get durable(): Readonly<DiskState> {
    return this.synced;
  }

  get dirty(): boolean {
    return this.unsynced.length > 0;
  }

  write(record: DiskRecord): void {
    this.stats.records++;
    applyRecord(this.written, record);
    this.unsynced.push(record);
  }

  sync(): void {
    this.stats.syncs++;
    for (const record of this.unsynced) applyRecord(this.synced, record);
    this.unsynced = [];
  }

  /** Loses power: afterwards the written state is what a restart reads. Returns records lost. */
  crash(mode: CrashMode, prng: Prng): number {
    const survivors = mode === "tearUnsynced" ? prng.int(this.unsynced.length + 1) : 0;
    for (const record of this.unsynced.slice(0, survivors)) applyRecord(this.synced, record);
    const lost = this.unsynced.length - survivors;
    if (mode === "tearUnsynced" && lost > 0) this.stats.tornRecords++;
    this.stats.lostRecords += lost;
    this.unsynced = [];
    this.written = copyState(this.synced);
    return lost;
  }

  /**
   * Damages the durable snapshot of a node that is down (false when it has none): what a bad
   * sector, a partial copy or another version's file leaves for its next start.
   */
  damageSnapshot(how: SnapshotDamage): boolean {
    const snapshot = this.synced.snapshot;
    if (!snapshot) return false;
    this.damage = how;
    if (how === "unrestorable") this.synced.snapshot = { meta: snapshot.meta, data: DAMAGED };
    this.written = copyState(this.synced);
    return true;
  }

  /**
   * Puts a bad snapshot file at `index` (above its own) on the disk of a node that is down and
   * holds a snapshot (false otherwise): the file is the newest, and the node's own snapshot and
   * log, which continue each other, are what it must open from.
   */
  plantSnapshot(how: SnapshotDamage, index: number): boolean {
    const own = this.synced.snapshot?.meta.index;
    if (own === undefined || index <= own || this.damaged) return false;
    this.planted = { index, how };
    return true;
  }

  /** The bad newer snapshot file planted and not set aside yet. */
  get plantedSnapshot(): PlantedSnapshot | undefined {
    return this.planted;
  }

  /** A snapshot is damaged or planted and not set aside yet. */
  get damaged(): boolean {
    return this.damage !== undefined || this.planted !== undefined;
  }

  unreadableSnapshot(): UnreadableSnapshot | undefined {
    const { hardState, snapshot, entries } = this.synced;
    const reason = "checksum mismatch (simulated)";
    if (this.planted) {
      if (this.planted.how !== "unreadable") return undefined;
      const { index } = this.planted;
      return { index, reason, hardState, entries: entries.filter((e) => e.index > index) };
    }
    if (this.damage !== "unreadable") return undefined;
    return { index: snapshot!.meta.index, reason, hardState, entries: [...entries] };
  }

  /** RaftStorage.fallBackToOlderSnapshot, durable at once: a planted file goes aside. */
  fallBackToOlderSnapshot(): FallBack | undefined {
    if (!this.planted) return undefined;
    const { index } = this.planted;
    this.planted = undefined;
    this.setAside.push(index);
    const restored = this.restore();
    return {
      restored: { ...restored, snapshot: restored.snapshot! },
      setAside: [asideName(index)],
    };
  }

  /** RaftStorage.setAsideSnapshot, durable at once: only the hard state is left. */
  setAsideSnapshot(hardState: HardState): string {
    const index = this.synced.snapshot!.meta.index;
    this.setAside.push(index);
    this.damage = undefined;
    this.synced = { hardState, entries: [] };
    this.written = copyState(this.synced);
    return asideName(index);
  }

  /** The storage one incarnation of the node uses; it stops working when `owner` dies. */
  open(owner: Owner, io: DiskIo): RaftStorage {
    return new SimStorage(this, owner, io);
  }

  /** What a restarted node is rebuilt from: the newest snapshot on disk and the log after it. */
  restore(): RaftRestore {
    const { hardState, snapshot, entries } = this.synced;
    if (this.planted) {
      const { index } = this.planted;
      const meta = { ...snapshot!.meta, index };
      const after = entries.filter((e) => e.index > index);
      return { hardState, snapshot: { meta, data: DAMAGED }, entries: after };
    }
    return snapshot
      ? { hardState, snapshot, entries: [...entries] }
      : { hardState, entries: [...entries] };
  }
}

/** What a disk needs from the simulation around it. */
export interface DiskIo {
  readonly scheduler: SimScheduler;
  /** The node's lane in the scheduler. */
  readonly lane: number;
  /** Virtual ms one flush (write + fdatasync) takes. */
  readonly latency: () => number;
  /** Called after entries were written (not yet synced), with the log as written. */
  readonly onAppend: (log: Readonly<DiskState>, written: readonly Entry[]) => void;
  /** Called when a flush is about to sync; true when the node crashed instead. */
  readonly crashesAtSync: () => boolean;
}

interface PendingSave {
  readonly sync: boolean;
  readonly resolve: () => void;
}

/** Never settles: what a dead node's saves return. */
const NEVER = new Promise<never>(() => {});

const asideName = (index: number) => `snapshot-${index}.snap.set-aside`;

class SimStorage implements RaftStorage {
  private pending: PendingSave[] = [];
  private flushScheduled = false;
  private closed = false;
  private restored: RaftRestore;

  constructor(
    private readonly disk: SimDisk,
    private readonly owner: Owner,
    private readonly io: DiskIo,
  ) {
    this.restored = disk.restore();
  }

  restore(): RaftRestore {
    if (this.disk.unreadableSnapshot()) throw new Error("disk: the snapshot cannot be read");
    return this.restored;
  }

  unreadableSnapshot(): UnreadableSnapshot | undefined {
    return this.disk.unreadableSnapshot();
  }

  fallBackToOlderSnapshot(): Promise<FallBack | undefined> {
    if (!this.owner.alive || this.closed) return NEVER;
    const older = this.disk.fallBackToOlderSnapshot();
    if (older) this.restored = older.restored;
    return Promise.resolve(older);
  }

  setAsideSnapshot(hardState: HardState): Promise<string> {
    if (!this.owner.alive || this.closed) return NEVER;
    return Promise.resolve(this.disk.setAsideSnapshot(hardState));
  }

  save(part: PersistPart, options: { readonly sync?: boolean } = {}): Promise<void> {
    if (!this.owner.alive || this.closed) return NEVER;
    const { disk } = this;
    if (part.snapshot) disk.write({ kind: "snapshot", snapshot: part.snapshot });
    if (part.entries.length > 0) {
      disk.write({ kind: "entries", entries: part.entries });
      this.io.onAppend(disk.state, part.entries);
    }
    if (part.hardState) disk.write({ kind: "hardState", hardState: part.hardState });
    return this.enqueue(options.sync ?? true);
  }

  saveSnapshot(snapshot: Snapshot): Promise<void> {
    if (!this.owner.alive || this.closed) return NEVER;
    this.disk.write({ kind: "compaction", snapshot });
    return this.enqueue(true);
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  private enqueue(sync: boolean): Promise<void> {
    return new Promise((resolve) => {
      this.pending.push({ sync, resolve });
      if (!this.flushScheduled) this.scheduleFlush();
    });
  }

  private scheduleFlush(): void {
    this.flushScheduled = true;
    const { scheduler } = this.io;
    scheduler.at(scheduler.now + this.io.latency(), this.io.lane, () => this.flush(), this.owner);
  }

  private flush(): void {
    const batch = this.pending;
    this.pending = [];
    if (batch.some((save) => save.sync)) {
      if (this.io.crashesAtSync()) return;
      this.disk.sync();
    }
    this.flushScheduled = false;
    for (const save of batch) save.resolve();
    if (this.pending.length > 0) this.scheduleFlush();
  }
}

function copyState(state: RaftRestore | DiskState): DiskState {
  const copy: DiskState = { hardState: state.hardState, entries: [...state.entries] };
  if (state.snapshot) copy.snapshot = state.snapshot;
  return copy;
}

function applyRecord(state: DiskState, record: DiskRecord): void {
  switch (record.kind) {
    case "hardState":
      state.hardState = record.hardState;
      return;
    case "entries":
      appendEntries(state, record.entries);
      return;
    case "snapshot":
      state.snapshot = record.snapshot;
      state.entries = [];
      return;
    case "compaction": {
      const { index, term } = record.snapshot.meta;
      if (termAt(state, index) !== term) {
        throw new Error(`disk: compaction at index ${index} term ${term} does not match the log`);
      }
      state.entries = state.entries.filter((e) => e.index > index);
      state.snapshot = record.snapshot;
      return;
    }
  }
}

function appendEntries(state: DiskState, entries: readonly Entry[]): void {
  const first = entries[0];
  if (!first) return;
  const offset = firstIndex(state);
  if (first.index < offset || first.index > offset + state.entries.length) {
    throw new Error(
      `disk: cannot append entries from index ${first.index}: the log holds ${offset}..${offset + state.entries.length - 1}`,
    );
  }
  state.entries.length = first.index - offset;
  state.entries.push(...entries);
}

export function firstIndex(state: Readonly<DiskState>): number {
  return (state.snapshot?.meta.index ?? 0) + 1;
}

export function lastIndex(state: Readonly<DiskState>): number {
  return firstIndex(state) + state.entries.length - 1;
}

/** The entry at `index`, or undefined when it is compacted or beyond the log. */
export function entryAt(state: Readonly<DiskState>, index: number): Entry | undefined {
  return state.entries[index - firstIndex(state)];
}

/** The term at `index` as this log knows it (snapshot boundary included), or undefined. */
export function termAt(state: Readonly<DiskState>, index: number): number | undefined {
  if (index === 0) return 0;
  if (state.snapshot && index === state.snapshot.meta.index) return state.snapshot.meta.term;
  return entryAt(state, index)?.term;
}
