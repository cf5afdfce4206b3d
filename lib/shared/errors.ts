/**
 * The text of a caught error, whatever was thrown. A leaf of lib/shared: imports nothing from
 * other rooms.
 * Owns: that one conversion. Must not touch: logging, exit codes (callers decide what to do).
 */

/** An Error's message, or the thrown value as text (a library may throw a string). */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
