/**
 * Whether a process exists, by pid. A leaf of lib/shared: imports nothing from other rooms.
 * Owns: that one probe. Must not touch: signalling a process for real, or deciding what it is.
 */

/** True while `pid` exists, including one this user may not signal (EPERM: a root node, say). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
