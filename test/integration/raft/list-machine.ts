/** A state machine for Raft driver tests: records every applied command as text, in order. */
import { decode, encode } from "cbor-x";
import type { StateMachine } from "../../../lib/raft/types.ts";

/** Records every applied command; apply returns the command's position. */
export class ListMachine implements StateMachine {
  items: string[] = [];
  apply(_index: number, data: Uint8Array): unknown {
    this.items.push(new TextDecoder().decode(data));
    return this.items.length;
  }
  snapshot(): Uint8Array {
    return encode(this.items);
  }
  restore(data: Uint8Array): void {
    this.items = decode(data);
  }
}
