/**
 * The one way to state an invariant: a condition that only a bug can make false (etcd raft
 * panics at the same spots). It throws an AssertionError naming what broke, so the state that
 * produced it is never acted on. A leaf of lib/shared: imports nothing from other rooms.
 * Owns: the check and its error. Must not touch: input validation (bad input from a user or a
 * peer gets a one-line error where it enters, not an assertion).
 */

export class AssertionError extends Error {
  override name = "AssertionError";
}

/** Throws an AssertionError with `message` (a function, so it costs nothing when the check holds). */
export function assert(condition: boolean, message: () => string): asserts condition {
  if (!condition) throw new AssertionError(`invariant broken: ${message()}`);
}
