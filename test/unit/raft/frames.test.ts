import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeMembership } from "../../../lib/raft/membership.ts";
import { crc32 } from "../../../lib/raft/storage/crc32.ts";
import {
  decodeHello,
  encodeFrame,
  encodeHello,
  FrameDecoder,
  FrameError,
  HelloReader,
  validateMessage,
} from "../../../lib/raft/transport/frames.ts";
import type { Message } from "../../../lib/raft/types.ts";

const append: Message = {
  type: "append",
  from: 1,
  to: 2,
  term: 3,
  prevIndex: 4,
  prevTerm: 2,
  commit: 4,
  entries: [{ index: 5, term: 3, kind: "command", data: new Uint8Array([1, 2, 3]) }],
};
const snapshot: Message = {
  type: "snapshot",
  from: 1,
  to: 3,
  term: 3,
  snapshot: {
    meta: { index: 9, term: 3, membership: { voters: [1, 2, 3], learners: [4] } },
    data: new Uint8Array(1000).fill(7),
  },
};

describe("raft frames", () => {
  test("frames survive being split at every byte", () => {
    const bytes = new Uint8Array([...encodeFrame(append), ...encodeFrame(snapshot)]);
    const decoder = new FrameDecoder();
    const received: Message[] = [];
    for (let i = 0; i < bytes.length; i++) received.push(...decoder.push(bytes.subarray(i, i + 1)));
    assert.equal(received.length, 2);
    assert.deepEqual(received[0], append);
    assert.deepEqual(received[1], snapshot);
  });

  test("an oversized frame is refused from its header alone", () => {
    const decoder = new FrameDecoder({ maxFrameBytes: 100 });
    assert.throws(
      () => decoder.push(encodeFrame(snapshot).subarray(0, 4)),
      /exceeds the limit of 100/,
    );
  });

  test("a header declaring 64 MiB allocates nothing: memory follows the bytes that arrive", () => {
    const decoder = new FrameDecoder({ maySendLarge: () => true });
    const header = new Uint8Array([0x04, 0, 0, 0]); // 64 MiB
    assert.deepEqual(decoder.push(header), []);
    assert.equal(decoder.buffered, 0);
    decoder.push(new Uint8Array(1000));
    assert.equal(decoder.buffered, 1000);
  });

  test("a large frame needs the sender's permission and must be a snapshot", () => {
    const small = { maxSmallFrameBytes: 200, maxFrameBytes: 10_000 };
    const big = encodeFrame(snapshot); // about 1.1 KB
    assert.throws(
      () => new FrameDecoder({ ...small, maySendLarge: () => false }).push(big),
      /exceeds the limit of 200/,
    );
    assert.deepEqual(new FrameDecoder({ ...small, maySendLarge: () => true }).push(big), [
      snapshot,
    ]);
    const bigAppend = encodeFrame({
      ...append,
      entries: [{ index: 5, term: 3, kind: "command", data: new Uint8Array(500) }],
    } as Message);
    assert.throws(
      () => new FrameDecoder({ ...small, maySendLarge: () => true }).push(bigAppend),
      /only a snapshot may exceed 200/,
    );
    // Small frames of any type pass without asking.
    let asked = 0;
    const decoder = new FrameDecoder({ ...small, maySendLarge: () => ++asked > 0 });
    assert.equal(decoder.push(encodeFrame(append)).length, 1);
    assert.equal(asked, 0);
  });

  test("a payload that is not CBOR or not a message is refused", () => {
    assert.throws(() => new FrameDecoder().push(new Uint8Array([0, 0, 0, 1, 0xff])), FrameError);
    assert.throws(
      () => validateMessage({ type: "shout", from: 1, to: 2, term: 1 }),
      /unknown message type/,
    );
    assert.throws(() => validateMessage({ ...append, to: 0 }), /bad "to"/);
    assert.throws(() => validateMessage({ ...append, term: -1 }), /bad "term"/);
    assert.throws(
      () =>
        validateMessage({
          ...append,
          entries: [{ index: 1, term: 1, kind: "command", data: "x" }],
        }),
      /bad "entries"/,
    );
    assert.throws(
      () =>
        validateMessage({
          ...snapshot,
          snapshot: { meta: { index: 1, term: 1 }, data: new Uint8Array() },
        }),
      /bad "snapshot"/,
    );
    const rejection = {
      type: "appendResp",
      from: 2,
      to: 1,
      term: 4,
      reject: true,
      index: 9,
      hintIndex: 0,
      hintTerm: 0,
    };
    assert.deepEqual(validateMessage({ ...rejection, logLost: true }), {
      ...rejection,
      logLost: true,
    });
    assert.throws(() => validateMessage({ ...rejection, logLost: "yes" }), /bad "logLost"/);
    assert.deepEqual(validateMessage({ type: "timeoutNow", from: 2, to: 1, term: 4 }), {
      type: "timeoutNow",
      from: 2,
      to: 1,
      term: 4,
    });
  });

  test("an append whose entries do not follow on from prevIndex is refused", () => {
    const entry = (index: number) => ({ index, term: 3, kind: "command", data: new Uint8Array() });
    assert.throws(
      () => validateMessage({ ...append, entries: [entry(6)] }),
      /do not follow on from prevIndex 4/,
    );
    assert.throws(
      () => validateMessage({ ...append, entries: [entry(5), entry(5)] }),
      /do not follow on from prevIndex 4/,
    );
    const contiguous = { ...append, entries: [entry(5), entry(6)] };
    assert.deepEqual(validateMessage(contiguous), contiguous);
  });

  test("a membership entry that does not decode is refused", () => {
    const membership = (data: Uint8Array) => ({
      ...append,
      entries: [{ index: 5, term: 3, kind: "membership", data }],
    });
    assert.throws(() => validateMessage(membership(new Uint8Array([0xff]))), /bad "entries"/);
    const good = membership(encodeMembership({ voters: [1, 2], learners: [] }));
    assert.deepEqual(validateMessage(good), good);
  });

  test("a hello survives being split at every byte and hands on what follows it", () => {
    const bytes = new Uint8Array([
      ...encodeHello({ major: 3, minor: 258 }),
      ...encodeFrame(append),
    ]);
    const reader = new HelloReader();
    let read: ReturnType<HelloReader["push"]>;
    let offset = 0;
    while (!read) read = reader.push(bytes.subarray(offset, ++offset));
    assert.deepEqual(read.version, { major: 3, minor: 258 });
    assert.equal(offset, 8);
    const rest = reader.push(bytes.subarray(offset));
    assert.deepEqual(new FrameDecoder().push(rest!.rest), [append]);
  });

  test("bytes that do not start with a hello are refused", () => {
    assert.throws(
      () => new HelloReader().push(encodeFrame(append)),
      /did not start with a Mill Raft hello/,
    );
    assert.throws(() => decodeHello(new Uint8Array(7)), FrameError);
  });

  test("crc32 matches the IEEE check value", () => {
    assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
    assert.equal(crc32(new Uint8Array(0)), 0);
  });
});
