/**
 * Bounds on what a request body may look like before it is parsed, besides its size (wire.ts):
 * JSON nesting depth and the media type. Owns: those checks, as pure functions over the text.
 * Must not touch: responses (http.ts turns a problem into 400/415).
 */

/** No Mill request nests deeper than a few levels; anything beyond this is refused unparsed. */
export const MAX_JSON_DEPTH = 16;

/**
 * Whether `text` opens more than `max` nested arrays or objects at some point, scanning outside
 * string literals only. Runs before JSON.parse, so a deep payload never builds a deep structure.
 */
export function jsonTooDeep(text: string, max = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const char = text.charCodeAt(i);
    if (inString) {
      if (char === 0x5c) i++;
      else if (char === 0x22) inString = false;
    } else if (char === 0x22) {
      inString = true;
    } else if (char === 0x5b || char === 0x7b) {
      if (++depth > max) return true;
    } else if (char === 0x5d || char === 0x7d) {
      depth--;
    }
  }
  return false;
}

/** Whether a Content-Type header names JSON (`application/json`, any parameters). */
export function isJsonMediaType(contentType: string | undefined): boolean {
  return contentType?.split(";")[0]?.trim().toLowerCase() === "application/json";
}
