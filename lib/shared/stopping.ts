/**
 * A start-up that a signal (SIGTERM, SIGINT) may stop half-way: the check its steps make between
 * one another, and the error it throws once a stop was asked for, so the code that started
 * something undoes it on its usual failure path.
 * A leaf of lib/shared: imports nothing from other rooms.
 * Owns: that check and its error. Must not touch: the signals themselves (lib/cli/agent.ts).
 */

/** A start-up that stopped because it was asked to; what it had started is undone. */
export class StoppedError extends Error {
  override name = "StoppedError";
}

/** Throws a StoppedError once `stopping` is aborted; `during` says what was under way. */
export function throwIfStopped(stopping: AbortSignal | undefined, during: string): void {
  if (stopping?.aborted) throw new StoppedError(`stopped by ${String(stopping.reason)} ${during}`);
}
