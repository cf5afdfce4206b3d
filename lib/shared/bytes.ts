/**
 * Joining byte arrays: Raft's storage and transport, DER encoding and the pinned TLS client all
 * need it. A leaf of lib/shared: imports nothing from other rooms.
 * Owns: nothing stateful. Must not touch: I/O.
 */

/** Joins byte arrays into one (the only array itself when there is one: callers never mutate it). */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
