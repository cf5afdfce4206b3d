/**
 * One node's simulated durable storage, following the Ready contract: the driver writes records
 * (snapshot, log truncate+append, hard state) and then syncs. A crash loses what was not synced;
 * a crash may also let a prefix of the unsynced records survive (the OS flushed them) and tear the
 * record after them, which a restart then discards. A restarted node is rebuilt from what survived.
 * Owns: records and their durability. Must not touch: the core, the network.
 */

import type { RaftRestore } from "../../lib/raft/core.ts";
import type { Entry, HardState, Snapshot } from "../../lib/raft/types.ts";
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

export class SimDisk {
  /** What a restart would read back. */
  private synced: DiskState;
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

  /** What a restarted node is rebuilt from. */
  restore(): RaftRestore {
    const { hardState, snapshot, entries } = this.synced;
    return snapshot
      ? { hardState, snapshot, entries: [...entries] }
      : { hardState, entries: [...entries] };
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
