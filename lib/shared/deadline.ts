/**
 * A promise with a time limit: the API waits this long for a commit or a read barrier before it
 * answers 503. A leaf of lib/shared: imports nothing from other rooms.
 * Owns: the race and its error. Must not touch: what is waited for (it keeps running; only the
 * caller stops waiting).
 */

export class DeadlineError extends Error {
  override name = "DeadlineError";
}

/** `promise`, or a DeadlineError after `ms`. */
export function deadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineError(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}
