/**
 * Field-by-field validation of untrusted input (request bodies, decoded commands, snapshots):
 * what a rule and a result look like, and the rules more than one room needs (schema.ts combines
 * rules into shapes). A leaf of lib/shared: imports nothing from other rooms.
 * Owns: how a field's problem is named and reported. Must not touch: the rules of any one room,
 * I/O.
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

/** Milliseconds since the epoch, as commands carry the time their proposer took. */
export const checkTime: Rule = (value, field) =>
  Number.isSafeInteger(value) && (value as number) >= 0
    ? undefined
    : `${field} is not a time: expected milliseconds since the epoch`;

/** A non-negative integer: indexes, counters, sizes read back from a snapshot. */
export const checkCount: Rule = (value, field) =>
  Number.isSafeInteger(value) && (value as number) >= 0 ? undefined : `${field} is not a count`;

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** 1-63 lowercase letters, digits and inner hyphens: node and workload names. */
export function isDnsLabel(text: string): boolean {
  return DNS_LABEL.test(text);
}
