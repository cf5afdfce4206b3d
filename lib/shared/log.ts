/**
 * What a room needs of a logger: one line per call. consola's tagged instances fit; tests pass
 * recorders.
 * Owns: that interface. Must not touch: anything outside lib/shared (this room is a leaf).
 */

export interface Log {
  info(message: string): void;
  warn(message: string): void;
}

/** A Log that also takes lines only worth showing when debugging. */
export interface DebugLog extends Log {
  debug(message: string): void;
}
