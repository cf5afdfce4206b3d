/**
 * Waiting for something another process or a device does (a node starting to serve, a config
 * appearing, a pid exiting, a socket answering): poll a check until it holds or a deadline
 * passes. The one such loop; the Raft driver's waits are driven by its ticks instead.
 * A leaf of lib/shared: imports nothing from other rooms.
 * Owns: that loop. Must not touch: what is checked.
 */

/**
 * Checks now and then every `intervalMs` until `check()` is true (resolves true) or `timeoutMs`
 * has passed (resolves false). A throwing check ends the wait with its error.
 */
export async function pollFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  intervalMs = 25,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  return true;
}

/** Like pollFor, but a wait that times out rejects with `timedOut()`. */
export async function pollUntil(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  timedOut: () => Error,
  intervalMs = 25,
): Promise<void> {
  if (!(await pollFor(check, timeoutMs, intervalMs))) throw timedOut();
}
