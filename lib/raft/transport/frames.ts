/**
 * The Raft wire format: a 4-byte big-endian length, then one CBOR-encoded Message. Pure functions:
 * framing, incremental deframing with a size limit, and validation of what a peer sent.
 * Owns: bytes <-> Message. Must not touch: sockets, timers.
 */

import { decode, encode } from "cbor-x";
import type { Entry, Message, MessageType, Snapshot } from "../types.ts";

export const FRAME_HEADER_BYTES = 4;
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;

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

/** Reassembles frames from stream chunks, copying each byte once even for large frames. */
export class FrameDecoder {
  private readonly header = new Uint8Array(FRAME_HEADER_BYTES);
  private headerFill = 0;
  private body: Uint8Array | undefined;
  private bodyFill = 0;

  constructor(private readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {}

  /** Returns the messages completed by `chunk`; throws FrameError on a bad frame. */
  push(chunk: Uint8Array): Message[] {
    const messages: Message[] = [];
    let offset = 0;
    while (offset < chunk.length) {
      if (!this.body) {
        const take = Math.min(FRAME_HEADER_BYTES - this.headerFill, chunk.length - offset);
        this.header.set(chunk.subarray(offset, offset + take), this.headerFill);
        this.headerFill += take;
        offset += take;
        if (this.headerFill < FRAME_HEADER_BYTES) break;
        const length = new DataView(this.header.buffer).getUint32(0);
        if (length === 0) throw new FrameError("empty frame");
        if (length > this.maxFrameBytes) {
          throw new FrameError(
            `frame of ${length} bytes exceeds the limit of ${this.maxFrameBytes}`,
          );
        }
        this.body = new Uint8Array(length);
        this.bodyFill = 0;
      }
      const take = Math.min(this.body.length - this.bodyFill, chunk.length - offset);
      this.body.set(chunk.subarray(offset, offset + take), this.bodyFill);
      this.bodyFill += take;
      offset += take;
      if (this.bodyFill === this.body.length) {
        messages.push(decodeMessage(this.body));
        this.body = undefined;
        this.headerFill = 0;
      }
    }
    return messages;
  }
}

export function decodeMessage(payload: Uint8Array): Message {
  let value: unknown;
  try {
    value = decode(payload);
  } catch (error) {
    throw new FrameError(`frame payload is not CBOR (${(error as Error).message})`);
  }
  return validateMessage(value);
}

type Fields = Record<string, unknown>;

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isIdList = (v: unknown) => Array.isArray(v) && v.every((id) => isCount(id) && id > 0);

function isEntry(v: unknown): v is Entry {
  const e = v as Fields;
  return (
    typeof e === "object" &&
    e !== null &&
    isCount(e.index) &&
    isCount(e.term) &&
    (e.kind === "command" || e.kind === "noop" || e.kind === "membership") &&
    e.data instanceof Uint8Array
  );
}

function isSnapshot(v: unknown): v is Snapshot {
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
  return value as Message;
}
