/**
 * The on-disk encoding of Raft storage: checksummed record framing and the payloads of log
 * records and snapshot files. Pure functions over bytes.
 * Owns: byte layouts and corruption detection. Must not touch: the file system.
 *
 * A record is `u32 length | u32 crc32(payload) | payload` (big endian); the payload is CBOR.
 * A log record is one persisted Ready: an optional reset (a snapshot was installed: every
 * earlier entry is gone), then entries, then an optional hard state. Entries carry truncation
 * implicitly: a record whose first entry has index i replaces every entry at or after i.
 */

import { decode, encode } from "cbor-x";
import { isCount, isSnapshot } from "../transport/frames.ts";
import type { Entry, EntryKind, HardState, Snapshot } from "../types.ts";
import { crc32 } from "./crc32.ts";

export const RECORD_HEADER_BYTES = 8;

/** The log or a snapshot file is damaged somewhere other than a torn tail: refusing to start. */
export class StorageCorruptError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(
      `raft storage is corrupt: ${file} at byte ${offset}: ${reason}; ` +
        "restore this node's data directory from a backup or remove it and re-join the node",
    );
    this.name = "StorageCorruptError";
  }
}

export function frameRecord(payload: Uint8Array): Uint8Array {
  const record = new Uint8Array(RECORD_HEADER_BYTES + payload.length);
  const view = new DataView(record.buffer);
  view.setUint32(0, payload.length);
  view.setUint32(4, crc32(payload));
  record.set(payload, RECORD_HEADER_BYTES);
  return record;
}

export interface ScanResult {
  readonly payloads: Uint8Array[];
  /** Bytes of the file that hold whole, valid records. */
  readonly validBytes: number;
  /** Why the bytes after validBytes were rejected, when they were (a torn tail). */
  readonly tornReason?: string;
}

/**
 * Splits `bytes` into record payloads. Damage in the last record, or a zero-filled tail, is a
 * torn write (reported, not thrown) only when `tailMayBeTorn`; anywhere else it throws.
 */
export function scanRecords(bytes: Uint8Array, file: string, tailMayBeTorn: boolean): ScanResult {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const payloads: Uint8Array[] = [];
  let offset = 0;
  const torn = (reason: string): ScanResult => {
    if (!tailMayBeTorn) throw new StorageCorruptError(file, offset, reason);
    return { payloads, validBytes: offset, tornReason: reason };
  };
  while (offset < bytes.length) {
    if (bytes.length - offset < RECORD_HEADER_BYTES) return torn("short record header");
    const length = view.getUint32(offset);
    const expected = view.getUint32(offset + 4);
    const end = offset + RECORD_HEADER_BYTES + length;
    if (length === 0) {
      if (isAllZero(bytes, offset)) return torn("zero-filled tail");
      throw new StorageCorruptError(file, offset, "record of length 0");
    }
    if (end > bytes.length) return torn(`record of ${length} bytes cut short`);
    if (crc32(bytes, offset + RECORD_HEADER_BYTES, end) !== expected) {
      if (end === bytes.length) return torn("checksum mismatch in the last record");
      throw new StorageCorruptError(file, offset, "checksum mismatch");
    }
    payloads.push(bytes.subarray(offset + RECORD_HEADER_BYTES, end));
    offset = end;
  }
  return { payloads, validBytes: offset };
}

function isAllZero(bytes: Uint8Array, from: number): boolean {
  for (let i = from; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

const KIND_CODES: Record<EntryKind, number> = { command: 0, noop: 1, membership: 2 };
const KINDS: readonly EntryKind[] = ["command", "noop", "membership"];

type WireEntry = [index: number, term: number, kind: number, data: Uint8Array];

interface WireLogRecord {
  r?: [index: number, term: number];
  e?: WireEntry[];
  /** With the catch-up point's term and index when the node is recovering (HardState.recovering). */
  h?: [term: number, vote: number, commit: number, catchUpTerm?: number, catchUpIndex?: number];
}

export interface LogRecord {
  /** A snapshot at this index was installed: every entry before this record is discarded. */
  readonly reset?: { readonly index: number; readonly term: number };
  readonly entries: readonly Entry[];
  readonly hardState?: HardState;
}

export function encodeLogRecord(record: LogRecord): Uint8Array {
  const wire: WireLogRecord = {};
  if (record.reset) wire.r = [record.reset.index, record.reset.term];
  if (record.entries.length > 0) {
    wire.e = record.entries.map((e) => [e.index, e.term, KIND_CODES[e.kind], e.data]);
  }
  const hs = record.hardState;
  if (hs) {
    wire.h = hs.recovering
      ? [hs.term, hs.vote, hs.commit, hs.recovering.term, hs.recovering.index]
      : [hs.term, hs.vote, hs.commit];
  }
  return frameRecord(encode(wire));
}

export function decodeLogRecord(payload: Uint8Array, file: string, offset: number): LogRecord {
  const fail = (what: string) =>
    new StorageCorruptError(file, offset, `unreadable record: ${what}`);
  let wire: WireLogRecord;
  try {
    wire = decode(payload);
  } catch {
    throw fail("not CBOR");
  }
  if (typeof wire !== "object" || wire === null) throw fail("not a map");
  const entries = (wire.e ?? []).map((w): Entry => {
    const kind = KINDS[w[2]];
    if (!kind || !(w[3] instanceof Uint8Array)) throw fail("bad entry");
    return { index: w[0], term: w[1], kind, data: w[3] };
  });
  return {
    reset: wire.r ? { index: wire.r[0], term: wire.r[1] } : undefined,
    entries,
    hardState: wire.h ? decodeHardState(wire.h, fail) : undefined,
  };
}

function decodeHardState(
  h: NonNullable<WireLogRecord["h"]>,
  fail: (what: string) => StorageCorruptError,
): HardState {
  const [term, vote, commit, catchUpTerm, catchUpIndex] = h;
  const hardState = { term, vote, commit };
  if (catchUpTerm === undefined) return hardState;
  if (!isCount(catchUpTerm) || !isCount(catchUpIndex)) throw fail("bad catch-up point");
  return { ...hardState, recovering: { term: catchUpTerm, index: catchUpIndex } };
}

export function encodeSnapshotFile(snapshot: Snapshot): Uint8Array {
  return frameRecord(encode({ meta: snapshot.meta, data: snapshot.data }));
}

export function decodeSnapshotFile(bytes: Uint8Array, file: string): Snapshot {
  const { payloads } = scanRecords(bytes, file, false);
  if (payloads.length !== 1) {
    throw new StorageCorruptError(
      file,
      0,
      `expected one snapshot record, found ${payloads.length}`,
    );
  }
  let value: unknown;
  try {
    value = decode(payloads[0]!);
  } catch {
    throw new StorageCorruptError(file, 0, "snapshot record is not CBOR");
  }
  // The same check as a snapshot received from a peer (frames.ts): the file is not trusted more.
  if (!isSnapshot(value)) {
    throw new StorageCorruptError(file, 0, "snapshot record lacks a valid meta or data");
  }
  return { meta: value.meta, data: value.data };
}
