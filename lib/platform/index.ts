/**
 * The runtime seam: picks the adapter for the runtime Mill runs on. Everything above lib/platform
 * calls `platform` and never asks which runtime it is on.
 * Owns: adapter selection. Must not touch: anything runtime-specific itself.
 */
import { denoPlatform } from "./deno/index.ts";
import { nodePlatform } from "./nodejs/index.ts";
import type { Platform } from "./types.ts";

export const platform: Platform = "Deno" in globalThis ? denoPlatform : nodePlatform;
