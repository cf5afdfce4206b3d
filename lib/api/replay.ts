/**
 * Binds each join request id to the registration it first committed, so a captured join body
 * replayed with the same id cannot register a different key or address: only an identical retry
 * is answered (idempotently). Owns: that bounded memory. Must not touch: HTTP, the Raft log.
 *
 * The ledger lives on the leader that answered; a new leader starts empty. Replaying a body
 * verbatim is harmless (it repeats the same registration), and changing a field needs the cluster
 * token, which pinned TLS keeps off the wire.
 */

/** Enough for every join of a large cluster between two leader changes. */
const MAX_REQUESTS = 4096;

export class JoinLedger {
  readonly #bound = new Map<string, string>();

  constructor(readonly capacity = MAX_REQUESTS) {}

  /** Whether `requestId` was already used for something other than `registration`. */
  conflicts(requestId: string, registration: string): boolean {
    const bound = this.#bound.get(requestId);
    return bound !== undefined && bound !== registration;
  }

  /** Records a committed registration under its request id; the oldest is forgotten first. */
  remember(requestId: string, registration: string): void {
    this.#bound.delete(requestId);
    this.#bound.set(requestId, registration);
    if (this.#bound.size > this.capacity) this.#bound.delete(this.#bound.keys().next().value!);
  }
}
