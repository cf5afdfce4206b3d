/**
 * Field-by-field validation of untrusted input (request bodies, decoded commands, snapshots).
 * A leaf of lib/shared: imports nothing from other rooms.
 * Owns: how a field's problem is named and reported. Must not touch: the rules of any one room
 * (each room declares its own rules with these types), I/O.
 */

/** A field's problem: `error` is one line naming the field and the fix. */
export interface FieldError {
  readonly field: string;
  readonly error: string;
}

/** Input that passed its checks, as the value they built; or the first problem found. */
export type Checked<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly problem: FieldError };

/** Checks one field's value; returns the problem as one line, or undefined when it is fine. */
export type Rule = (value: unknown, field: string) => string | undefined;

/** Runs `rules` over the fields of `record` in order and reports the first failure. */
export function checkFields(
  record: unknown,
  rules: Readonly<Record<string, Rule>>,
  prefix = "",
): FieldError | undefined {
  if (typeof record !== "object" || record === null || Array.isArray(record)) {
    const field = prefix.replace(/\.$/, "") || "body";
    return { field, error: `${field} must be a JSON object` };
  }
  for (const [name, rule] of Object.entries(rules)) {
    const field = prefix + name;
    const error = rule((record as Record<string, unknown>)[name], field);
    if (error !== undefined) return { field, error };
  }
  return undefined;
}
