/**
 * The linearizability checker on hand-made histories (each one accepted or rejected for a reason
 * stated in its name) and on generated histories that are linearizable by construction.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { checkKvHistory, type KvInput, type KvOutput, type Operation } from "./linearizability.ts";
import { Prng } from "./prng.ts";

const write = (call: number, ret: number | undefined, value: string, key = "k"): Operation =>
  op(call, ret, { op: "write", key, value }, null);
const read = (call: number, ret: number, value: string | null, key = "k"): Operation =>
  op(call, ret, { op: "read", key }, { value });
const cas = (
  call: number,
  ret: number | undefined,
  expect: string | null,
  value: string,
  swapped?: boolean,
): Operation =>
  op(
    call,
    ret,
    { op: "cas", key: "k", expect, value },
    swapped === undefined ? undefined : { swapped },
  );

let nextClient = 0;
function op(
  call: number,
  ret: number | undefined,
  input: KvInput,
  output: KvOutput | undefined,
): Operation {
  const client = nextClient++;
  if (ret === undefined) return { client, call, input };
  return output === undefined ? { client, call, ret, input } : { client, call, ret, input, output };
}

const accepts = (...history: Operation[]) =>
  assert.deepEqual(checkKvHistory(history), { ok: true });
const rejects = (...history: Operation[]) => assert.equal(checkKvHistory(history).ok, false);

describe("linearizability checker: accepts", () => {
  test("an empty history", () => accepts());
  test("a read of an absent key sees null", () => accepts(read(1, 2, null)));
  test("a read after a completed write sees it", () => accepts(write(1, 2, "a"), read(3, 4, "a")));
  test("a read concurrent with a write may see the old value", () =>
    accepts(write(1, 4, "a"), read(2, 3, null)));
  test("a read concurrent with a write may see the new value", () =>
    accepts(write(1, 4, "a"), read(2, 3, "a")));
  test("concurrent writes in either order", () => {
    accepts(write(1, 5, "a"), write(2, 6, "b"), read(7, 8, "a"));
    accepts(write(1, 5, "a"), write(2, 6, "b"), read(7, 8, "b"));
  });
  test("a pending write seen by a later read", () =>
    accepts(write(1, undefined, "a"), read(2, 3, "a")));
  test("a pending write never seen", () => accepts(write(1, undefined, "a"), read(2, 3, null)));
  test("a pending write seen late, after reads that missed it", () =>
    accepts(write(1, undefined, "a"), read(2, 3, null), read(4, 5, "a")));
  test("compare-and-set that swaps and one that fails", () =>
    accepts(cas(1, 2, null, "a", true), cas(3, 4, null, "b", false), read(5, 6, "a")));
  test("a pending compare-and-set may have swapped", () =>
    accepts(write(1, 2, "a"), cas(3, undefined, "a", "b"), read(4, 5, "b")));
  test("keys are independent registers", () =>
    accepts(write(1, 2, "a", "x"), read(3, 4, null, "y"), read(5, 6, "a", "x")));
  test("operations touching at one instant are ordered", () =>
    accepts(write(1, 2, "a"), read(2, 3, "a")));
});

describe("linearizability checker: rejects", () => {
  test("a stale read after a completed write", () => rejects(write(1, 2, "a"), read(3, 4, null)));
  test("a lost write: the earlier of two sequential writes read last", () =>
    rejects(write(1, 2, "a"), write(3, 4, "b"), read(5, 6, "a")));
  test("a lost update: two compare-and-sets from the same value both swap", () =>
    rejects(cas(1, 2, null, "a", true), cas(3, 4, null, "b", true)));
  test("a read of a value never written", () => rejects(read(1, 2, "ghost")));
  test("a read of a value from a write called after it returned", () =>
    rejects(read(1, 2, "a"), write(3, 4, "a")));
  test("a pending write seen and then unseen", () =>
    rejects(write(1, undefined, "a"), read(2, 3, "a"), read(4, 5, null)));
  test("two reads that disagree on the order of concurrent writes", () =>
    rejects(
      write(1, 10, "a"),
      write(2, 10, "b"),
      read(3, 4, "a"),
      read(5, 6, "b"),
      read(7, 8, "a"),
    ));
  test("a failed compare-and-set that should have swapped", () =>
    rejects(write(1, 2, "a"), cas(3, 4, "a", "b", false)));
  test("the bad key is named, with the operation the search could not place", () => {
    const stale = read(7, 8, null, "y");
    const result = checkKvHistory([
      write(1, 2, "a", "x"),
      write(3, 4, "b", "y"),
      read(5, 6, "a", "x"),
      stale,
    ]);
    assert.equal(result.ok, false);
    if (!result.ok) {
      assert.equal(result.key, "y");
      assert.equal(result.stuckAt, stale);
    }
  });
});

test("linearizability checker: gives up loudly on a search too large for its budget", () => {
  // Twenty concurrent writes and one read that matches none: every order must be tried.
  const writes = Array.from({ length: 20 }, (_, i) => write(1, 100, `w${i}`));
  assert.throws(() => checkKvHistory([...writes, read(101, 102, "none")], 1000), /gave up/);
});

/**
 * A register run by `clients` concurrent clients: each operation takes effect at a random instant
 * between its call and its return, so the history is linearizable by construction.
 */
function generatedHistory(prng: Prng, clients: number, steps: number): Operation[] {
  interface Running {
    client: number;
    call: number;
    input: KvInput;
    output?: KvOutput;
    done: boolean;
  }
  let register: string | null = null;
  let time = 0;
  const running = new Map<number, Running>();
  const history: Operation[] = [];
  for (let i = 0; i < steps; i++) {
    const client = prng.int(clients);
    const current = running.get(client);
    time++;
    if (!current) {
      const kind = prng.int(3);
      const value = `v${i}`;
      const input: KvInput =
        kind === 0
          ? { op: "read", key: "k" }
          : kind === 1
            ? { op: "write", key: "k", value }
            : { op: "cas", key: "k", expect: prng.chance(0.5) ? register : null, value };
      running.set(client, { client, call: time, input, done: false });
    } else if (!current.done) {
      const { input } = current;
      if (input.op === "read") current.output = { value: register };
      else if (input.op === "write") {
        register = input.value;
        current.output = null;
      } else {
        const swapped = register === input.expect;
        if (swapped) register = input.value;
        current.output = { swapped };
      }
      current.done = true;
    } else {
      history.push({
        client,
        call: current.call,
        ret: time,
        input: current.input,
        output: current.output!,
      });
      running.delete(client);
    }
  }
  // Operations still running never returned: pending, whether or not they took effect.
  for (const { client, call, input } of running.values()) history.push({ client, call, input });
  return history;
}

test("linearizability checker: accepts 200 generated linearizable histories", () => {
  const prng = new Prng(7);
  for (let run = 0; run < 200; run++) {
    const history = generatedHistory(prng, 1 + prng.int(5), 20 + prng.int(180));
    assert.deepEqual(checkKvHistory(history), { ok: true }, `generated history ${run}`);
  }
});

test("linearizability checker: rejects generated histories once one read sees a phantom value", () => {
  const prng = new Prng(11);
  let rejected = 0;
  for (let run = 0; run < 100; run++) {
    const history = generatedHistory(prng, 3, 120);
    const reads = history.flatMap((o, i) =>
      o.input.op === "read" && o.ret !== undefined ? [i] : [],
    );
    if (reads.length === 0) continue;
    const index = prng.pick(reads);
    history[index] = { ...history[index]!, output: { value: "phantom" } };
    assert.equal(checkKvHistory(history).ok, false, `falsified history ${run}`);
    rejected++;
  }
  assert.ok(rejected > 50, `only ${rejected} generated histories had a read to falsify`);
});
