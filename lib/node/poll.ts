/**
 * Waiting for something another process does (a node starting to serve, a config appearing):
 * poll a check until it holds or a deadline passes.
 * Owns: that loop. Must not touch: what is checked.
 */

/** Resolves once `check()` is true; a throwing check ends the wait with its error. */
export async function pollUntil(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  timedOut: () => Error,
  intervalMs = 25,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw timedOut();
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
