/**
 * Mill's own version, as package.json names it: shown by `mill --version` and kept in each node's
 * replicated record (the VERSION column of `mill nodes`). A leaf of lib/shared.
 * Owns: that one constant. Must not touch: protocol versions (what nodes speak to each other).
 */
import pkg from "../../package.json" with { type: "json" };

/**
 * Defined only in the executables the version-skew tests build (build/executable.ts `variant`),
 * so a second build tells itself apart; a release build leaves it undefined.
 */
declare const __MILL_VERSION_VARIANT__: string | undefined;

export const MILL_VERSION: string =
  typeof __MILL_VERSION_VARIANT__ === "undefined" ? pkg.version : __MILL_VERSION_VARIANT__;
