/**
 * A linearizability checker for a key-value store of registers (read, write, compare-and-set),
 * after Wing & Gong with Lowe's memoization: a depth-first search for a linearization that
 * lifts operations out of a call/return list and caches every (linearized set, state) already
 * explored. Keys are independent registers, so each key's history is checked on its own.
 * Operations that never returned (pending) may or may not have taken effect.
 * Owns: the model and the search. Must not touch: the cluster that produced the history.
 */

export type KvInput =
  | { readonly op: "read"; readonly key: string }
  | { readonly op: "write"; readonly key: string; readonly value: string }
  | {
      readonly op: "cas";
      readonly key: string;
      readonly expect: string | null;
      readonly value: string;
    };

/** read: the value seen; cas: whether it swapped; write: nothing. */
export type KvOutput = { readonly value: string | null } | { readonly swapped: boolean } | null;

export interface Operation {
  readonly client: number;
  readonly input: KvInput;
  /** When the client called, and when it got the answer (undefined: never, the op is pending). */
  readonly call: number;
  readonly ret?: number;
  readonly output?: KvOutput;
}

export type CheckResult =
  | { readonly ok: true }
  | {
      readonly ok: false;
      readonly key: string;
      /** The key's operations, in call order. */
      readonly history: readonly Operation[];
      /** An operation that returned before any linearization could include it. */
      readonly stuckAt: Operation;
    };

type Register = string | null;

/** The register after `input`, or undefined when `output` cannot have come from `state`. */
function step(state: Register, input: KvInput, output: KvOutput | undefined): Register | undefined {
  switch (input.op) {
    case "read":
      if (output === undefined) return state;
      return output !== null && "value" in output && output.value === state ? state : undefined;
    case "write":
      return input.value;
    case "cas": {
      const swapped = state === input.expect;
      if (
        output !== undefined &&
        !(output !== null && "swapped" in output && output.swapped === swapped)
      ) {
        return undefined;
      }
      return swapped ? input.value : state;
    }
  }
}

/**
 * Checks a whole key-value history; every key starts absent (null). The search is exponential in
 * the worst case: past `maxSteps` search steps for one key it throws rather than run for ages.
 */
export function checkKvHistory(history: readonly Operation[], maxSteps = 5_000_000): CheckResult {
  const byKey = new Map<string, Operation[]>();
  for (const operation of history) {
    if (operation.ret === undefined && operation.input.op === "read") continue;
    if (operation.ret !== undefined && operation.ret < operation.call) {
      throw new Error(`operation of client ${operation.client} returns before it is called`);
    }
    const ops = byKey.get(operation.input.key) ?? [];
    ops.push(operation);
    byKey.set(operation.input.key, ops);
  }
  for (const [key, ops] of [...byKey].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const stuckAt = checkRegister(ops, maxSteps, key);
    if (stuckAt) return { ok: false, key, history: ops, stuckAt };
  }
  return { ok: true };
}

interface Event {
  readonly id: number;
  readonly operation: Operation;
  readonly time: number;
  readonly isCall: boolean;
  /** The call's return event (for a call). */
  match?: Event;
  prev?: Event;
  next?: Event;
}

/** Returns undefined when linearizable, else an operation whose return no search got past. */
function checkRegister(
  ops: readonly Operation[],
  maxSteps: number,
  key: string,
): Operation | undefined {
  const events: Event[] = [];
  ops.forEach((operation, id) => {
    const call: Event = { id, operation, time: operation.call, isCall: true };
    const ret: Event = {
      id,
      operation,
      time: operation.ret ?? Number.POSITIVE_INFINITY,
      isCall: false,
    };
    call.match = ret;
    events.push(call, ret);
  });
  // Returns sort before calls at the same time: touching operations are ordered, not concurrent.
  events.sort((a, b) => a.time - b.time || Number(a.isCall) - Number(b.isCall));
  const head: Event = { id: -1, operation: ops[0]!, time: 0, isCall: false };
  let prev = head;
  for (const event of events) {
    prev.next = event;
    event.prev = prev;
    prev = event;
  }

  const linearized = new Uint32Array(Math.ceil(ops.length / 32));
  const seen = new Set<string>();
  const stack: { call: Event; state: Register }[] = [];
  let state: Register = null;
  let deepest = -1;
  let stuckAt: Operation = ops[0]!;
  let entry = head.next;
  for (let steps = 0; entry; steps++) {
    if (steps > maxSteps) {
      throw new Error(
        `linearizability check of key ${key} gave up after ${maxSteps} steps (${ops.length} operations): ` +
          "the history is too concurrent to decide",
      );
    }
    if (entry.isCall) {
      const next = step(state, entry.operation.input, entry.operation.output);
      if (next !== undefined) {
        toggle(linearized, entry.id);
        const key = `${linearized.join(",")}|${next === null ? "" : `=${next}`}`;
        if (!seen.has(key)) {
          seen.add(key);
          stack.push({ call: entry, state });
          state = next;
          lift(entry);
          entry = head.next;
          continue;
        }
        toggle(linearized, entry.id);
      }
      entry = entry.next;
    } else {
      if (stack.length > deepest) {
        deepest = stack.length;
        stuckAt = entry.operation;
      }
      const top = stack.pop();
      if (!top) return stuckAt;
      state = top.state;
      toggle(linearized, top.call.id);
      unlift(top.call);
      entry = top.call.next;
    }
  }
  return undefined;
}

function toggle(bits: Uint32Array, id: number): void {
  bits[id >>> 5]! ^= 1 << (id & 31);
}

function lift(call: Event): void {
  const ret = call.match!;
  call.prev!.next = call.next;
  call.next!.prev = call.prev;
  ret.prev!.next = ret.next;
  if (ret.next) ret.next.prev = ret.prev;
}

function unlift(call: Event): void {
  const ret = call.match!;
  ret.prev!.next = ret;
  if (ret.next) ret.next.prev = ret;
  call.prev!.next = call;
  call.next!.prev = call;
}
