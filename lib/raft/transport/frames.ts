/**
 * The Raft wire format: a 4-byte big-endian length, then one CBOR-encoded Message. Pure functions:
 * framing, incremental deframing with size limits, and validation of what a peer sent: every
 * field's type, an append's entries contiguous after prevIndex, membership entries that decode.
 * The core trusts a Message that passed here and checks none of it again.
 * Owns: bytes <-> Message. Must not touch: sockets, timers.
 */

import { decode, encode } from "cbor-x";
import { concatBytes } from "../../shared/bytes.ts";
import { errorMessage } from "../../shared/errors.ts";
import { decodeMembership } from "../membership.ts";
import type { Entry, Message, MessageType, Snapshot } from "../types.ts";

export const FRAME_HEADER_BYTES = 4;
/** The most any frame may declare: a snapshot of the whole state, from the leader. */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;
/**
 * The most any other frame may declare. The leader batches at most 1 MiB of entries per append
 * (core.ts), and one entry is bounded by the API's body limit, so 4 MiB leaves room to spare.
 */
export const DEFAULT_MAX_SMALL_FRAME_BYTES = 4 * 1024 * 1024;

/**
 * Each end of a connection first sends a hello: "MILL", then its protocol's major and minor
 * version as big-endian 16-bit numbers. Frames follow.
 */
export const HELLO_BYTES = 8;
const HELLO_MAGIC = [0x4d, 0x49, 0x4c, 0x4c];

export interface Version {
  readonly major: number;
  readonly minor: number;
}

export function encodeHello(version: Version): Uint8Array {
  const hello = new Uint8Array(HELLO_BYTES);
  hello.set(HELLO_MAGIC);
  const view = new DataView(hello.buffer);
  view.setUint16(4, version.major);
  view.setUint16(6, version.minor);
  return hello;
}

/**
 * What an accepting end sends after its hello when it refuses a dialler below the cluster's
 * protocol: this byte, then a hello carrying the cluster's protocol. A dialler reads only
 * acknowledgements (6) after a hello, so builds from before it ignore the bytes; one that knows
 * them stops dialling and learns why.
 */
export const REFUSAL_BYTE = 0x15;

export function encodeRefusal(cluster: Version): Uint8Array {
  return new Uint8Array([REFUSAL_BYTE, ...encodeHello(cluster)]);
}

/** The version in a hello; throws FrameError when the bytes are not one. */
export function decodeHello(hello: Uint8Array): Version {
  if (hello.length !== HELLO_BYTES || HELLO_MAGIC.some((byte, i) => hello[i] !== byte)) {
    throw new FrameError("the connection did not start with a Mill Raft hello");
  }
  const view = new DataView(hello.buffer, hello.byteOffset, HELLO_BYTES);
  return { major: view.getUint16(4), minor: view.getUint16(6) };
}

/**
 * Splits a stream into its first HELLO_BYTES (the peer's hello) and what follows. Pure: feed it
 * chunks; it answers the hello once complete, and the bytes after it.
 */
export class HelloReader {
  private readonly bytes = new Uint8Array(HELLO_BYTES);
  private fill = 0;

  /** Undefined until the hello is whole; then the version and the rest of this chunk. */
  push(chunk: Uint8Array): { version: Version; rest: Uint8Array } | undefined {
    const take = Math.min(HELLO_BYTES - this.fill, chunk.length);
    this.bytes.set(chunk.subarray(0, take), this.fill);
    this.fill += take;
    if (this.fill < HELLO_BYTES) return undefined;
    return { version: decodeHello(this.bytes), rest: chunk.subarray(take) };
  }
}

/** A peer sent something that is not a valid frame: its connection must be closed. */
export class FrameError extends Error {
  override name = "FrameError";
}

export function encodeFrame(message: Message): Uint8Array {
  const payload = encode(message);
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  new DataView(frame.buffer).setUint32(0, payload.length);
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

export interface FrameLimits {
  /** Frames up to this size are read from anyone the connection belongs to. */
  readonly maxSmallFrameBytes?: number;
  /** The limit for a large frame, which must then hold a snapshot. */
  readonly maxFrameBytes?: number;
  /** Asked when a header declares a large frame: may this sender send one now? */
  readonly maySendLarge?: () => boolean;
}

/**
 * Reassembles frames from stream chunks. Nothing is allocated for what a header declares: the
 * chunks are kept as they arrive and joined once the frame is whole, so memory follows the bytes
 * a peer really sent. A frame above the small limit is allowed only when `maySendLarge` says so
 * (the transport asks whether the sender is the leader) and must then decode to a snapshot.
 */
export class FrameDecoder {
  private readonly header = new Uint8Array(FRAME_HEADER_BYTES);
  private headerFill = 0;
  /** Declared length of the frame being read; 0 while reading a header. */
  private length = 0;
  private large = false;
  private parts: Uint8Array[] = [];
  private fill = 0;
  private readonly maxSmall: number;
  private readonly maxLarge: number;
  private readonly maySendLarge: () => boolean;

  constructor(limits: FrameLimits = {}) {
    this.maxLarge = limits.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.maxSmall = Math.min(
      this.maxLarge,
      limits.maxSmallFrameBytes ?? DEFAULT_MAX_SMALL_FRAME_BYTES,
    );
    this.maySendLarge = limits.maySendLarge ?? (() => false);
  }

  /** Bytes held for the frame being read. */
  get buffered(): number {
    return this.fill;
  }

  /** Returns the messages completed by `chunk`; throws FrameError on a bad frame. */
  push(chunk: Uint8Array): Message[] {
    const messages: Message[] = [];
    let offset = 0;
    while (offset < chunk.length) {
      if (this.length === 0) {
        const take = Math.min(FRAME_HEADER_BYTES - this.headerFill, chunk.length - offset);
        this.header.set(chunk.subarray(offset, offset + take), this.headerFill);
        this.headerFill += take;
        offset += take;
        if (this.headerFill < FRAME_HEADER_BYTES) break;
        this.start(new DataView(this.header.buffer).getUint32(0));
      }
      const take = Math.min(this.length - this.fill, chunk.length - offset);
      this.parts.push(chunk.subarray(offset, offset + take));
      this.fill += take;
      offset += take;
      if (this.fill === this.length) messages.push(this.finish());
    }
    return messages;
  }

  private start(length: number): void {
    if (length === 0) throw new FrameError("empty frame");
    this.large = length > this.maxSmall;
    if (length > this.maxLarge || (this.large && !this.maySendLarge())) {
      const limit = length > this.maxLarge ? this.maxLarge : this.maxSmall;
      throw new FrameError(`frame of ${length} bytes exceeds the limit of ${limit}`);
    }
    this.length = length;
  }

  private finish(): Message {
    const payload = concatBytes(this.parts);
    const large = this.large;
    this.parts = [];
    this.fill = 0;
    this.length = 0;
    this.headerFill = 0;
    const message = decodeMessage(payload);
    if (large && message.type !== "snapshot") {
      throw new FrameError(
        `a ${message.type} message of ${payload.length} bytes: only a snapshot may exceed ${this.maxSmall}`,
      );
    }
    return message;
  }
}

export function decodeMessage(payload: Uint8Array): Message {
  let value: unknown;
  try {
    value = decode(payload);
  } catch (error) {
    throw new FrameError(`frame payload is not CBOR (${errorMessage(error)})`);
  }
  return validateMessage(value);
}

type Fields = Record<string, unknown>;

export const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isIdList = (v: unknown) => Array.isArray(v) && v.every((id) => isCount(id) && id > 0);

function isEntry(v: unknown): v is Entry {
  const e = v as Fields;
  return (
    typeof e === "object" &&
    e !== null &&
    isCount(e.index) &&
    isCount(e.term) &&
    (e.kind === "command" || e.kind === "noop" || e.kind === "membership") &&
    e.data instanceof Uint8Array &&
    (e.kind !== "membership" || decodes(e.data))
  );
}

function decodes(membership: Uint8Array): boolean {
  try {
    decodeMembership(membership);
    return true;
  } catch {
    return false;
  }
}

/** A snapshot's shape: also what a snapshot file on disk must have (storage/records.ts). */
export function isSnapshot(v: unknown): v is Snapshot {
  const s = v as { meta?: Fields; data?: unknown };
  const membership = s?.meta?.membership as Fields | undefined;
  return (
    typeof s === "object" &&
    s !== null &&
    s.data instanceof Uint8Array &&
    isCount(s.meta?.index) &&
    isCount(s.meta?.term) &&
    isIdList(membership?.voters) &&
    isIdList(membership?.learners)
  );
}

/** Per message type: the fields beyond the envelope and how to check them. */
const SHAPES: Record<MessageType, Record<string, (v: unknown) => boolean>> = {
  preVote: {
    lastIndex: isCount,
    lastTerm: isCount,
    transfer: (v) => v === undefined || typeof v === "boolean",
  },
  vote: {
    lastIndex: isCount,
    lastTerm: isCount,
    transfer: (v) => v === undefined || typeof v === "boolean",
  },
  preVoteResp: { reject: (v) => typeof v === "boolean" },
  voteResp: { reject: (v) => typeof v === "boolean" },
  append: {
    prevIndex: isCount,
    prevTerm: isCount,
    commit: isCount,
    entries: (v) => Array.isArray(v) && v.every(isEntry),
  },
  appendResp: {
    reject: (v) => typeof v === "boolean",
    index: isCount,
    hintIndex: isCount,
    hintTerm: isCount,
    logLost: (v) => v === undefined || typeof v === "boolean",
  },
  heartbeat: { commit: isCount, ctx: isCount },
  heartbeatResp: { ctx: isCount },
  snapshot: { snapshot: isSnapshot },
  timeoutNow: {},
  readIndex: { ctx: isCount },
  readIndexResp: { ctx: isCount, index: isCount, reject: (v) => typeof v === "boolean" },
};

/** Checks that `value` has the shape of a Message; throws FrameError naming the first bad field. */
export function validateMessage(value: unknown): Message {
  const fields = value as Fields;
  if (typeof fields !== "object" || fields === null) throw new FrameError("message is not a map");
  if (typeof fields.type !== "string" || !Object.hasOwn(SHAPES, fields.type)) {
    throw new FrameError(`unknown message type ${JSON.stringify(fields.type)}`);
  }
  const shape = SHAPES[fields.type as MessageType];
  for (const key of ["from", "to"] as const) {
    if (!isCount(fields[key]) || fields[key] === 0) {
      throw new FrameError(`${fields.type} message has a bad "${key}"`);
    }
  }
  if (!isCount(fields.term)) throw new FrameError(`${fields.type} message has a bad "term"`);
  for (const [key, check] of Object.entries(shape)) {
    if (!check(fields[key])) throw new FrameError(`${fields.type} message has a bad "${key}"`);
  }
  if (fields.type === "append") {
    const { prevIndex, entries } = value as Extract<Message, { type: "append" }>;
    if (entries.some((entry, i) => entry.index !== prevIndex + 1 + i)) {
      throw new FrameError(`append message's entries do not follow on from prevIndex ${prevIndex}`);
    }
  }
  return value as Message;
}
