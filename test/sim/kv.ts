/**
 * The replicated state machine of the simulation: a key-value store of registers with read,
 * write and compare-and-set, plus a running digest of every command applied and the index of the
 * last one, so that two nodes' states (and snapshots) compare in O(1).
 * Owns: the command codec and deterministic apply. Must not touch: Raft, the network, clocks.
 */

import type { StateMachine } from "../../lib/raft/types.ts";
import { digestBytes } from "./invariants.ts";
import type { KvInput, KvOutput } from "./linearizability.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A command carries a unique id, so that two proposals never have the same bytes. */
export function encodeCommand(id: number, input: KvInput): Uint8Array {
  return encoder.encode(JSON.stringify({ id, input }));
}

export function decodeCommand(data: Uint8Array): { id: number; input: KvInput } {
  return JSON.parse(decoder.decode(data)) as { id: number; input: KvInput };
}

export class KvMachine implements StateMachine {
  private values = new Map<string, string>();
  /** A fingerprint of every command applied so far, in order. */
  digest = 0;
  /** The index of the last command applied (or restored from a snapshot). */
  lastIndex = 0;
  /** The client id carried by the last command applied. */
  lastCommandId = 0;

  get(key: string): string | null {
    return this.values.get(key) ?? null;
  }

  apply(index: number, data: Uint8Array): KvOutput {
    this.digest = digestBytes(data, (this.digest ^ index) >>> 0);
    this.lastIndex = index;
    const { id, input: command } = decodeCommand(data);
    this.lastCommandId = id;
    switch (command.op) {
      case "write":
        this.values.set(command.key, command.value);
        return null;
      case "cas": {
        const swapped = this.get(command.key) === command.expect;
        if (swapped) this.values.set(command.key, command.value);
        return { swapped };
      }
      default:
        throw new Error(`kv: a ${command.op} is served by ReadIndex, never proposed`);
    }
  }

  snapshot(): Uint8Array {
    const { digest, lastIndex } = this;
    return encoder.encode(JSON.stringify({ digest, lastIndex, values: [...this.values] }));
  }

  restore(data: Uint8Array): void {
    const { digest, lastIndex, values } = JSON.parse(decoder.decode(data)) as {
      digest: number;
      lastIndex: number;
      values: [string, string][];
    };
    this.digest = digest;
    this.lastIndex = lastIndex;
    this.values = new Map(values);
  }
}
