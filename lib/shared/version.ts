/**
 * Mill's own version, as package.json names it: shown by `mill --version` and kept in each node's
 * replicated record (the VERSION column of `mill nodes`). A leaf of lib/shared.
 * Owns: that one constant. Must not touch: protocol versions (what nodes speak to each other).
 */
import pkg from "../../package.json" with { type: "json" };

export const MILL_VERSION: string = pkg.version;
