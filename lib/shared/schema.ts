/**
 * Shapes of untrusted data declared once: a schema checks a value field by field, rebuilds it
 * from its known fields only (in declaration order, dropping anything else), and gives its
 * TypeScript type (`Infer`). The Raft log's commands, request bodies and snapshot records are
 * declared this way, so a parser, a rebuilder and an interface cannot disagree.
 * A leaf of lib/shared: imports nothing from other rooms.
 * Owns: the combinators and how their problems name a field. Must not touch: any room's rules
 * (leaves take a room's Rule), I/O.
 */

import type { Checked, Rule } from "./fields.ts";

export interface Schema<T> {
  /** Checks `value`, named `field` in problems ("" for a whole body), and rebuilds it. */
  parse(value: unknown, field: string): Checked<T>;
  /** Rebuilds a value already of this type (as parse would), without checking it again. */
  pick(value: T): T;
}

/** An object member that may be absent (undefined); when absent it is left out of the rebuild. */
export interface Optional<T> {
  readonly optional: Schema<T>;
}

export type Infer<S> = S extends Schema<infer T> ? T : S extends Optional<infer T> ? T : never;

export type Shape = Readonly<Record<string, Schema<unknown> | Optional<unknown>>>;

type Flat<T> = { [K in keyof T]: T[K] } & {};

/** The object a shape describes: optional members become optional properties. */
export type ObjectOf<S extends Shape> = Flat<
  {
    readonly [K in keyof S as S[K] extends Optional<unknown> ? never : K]: Infer<S[K]>;
  } & {
    readonly [K in keyof S as S[K] extends Optional<unknown> ? K : never]?: Infer<S[K]>;
  }
>;

export interface ObjectSchema<S extends Shape> extends Schema<ObjectOf<S>> {
  /** The members, for shapes that extend this one. */
  readonly shape: S;
}

const problem = (field: string, error: string) =>
  ({ ok: false, problem: { field, error } }) as const;

const path = (field: string, key: string) => (field === "" ? key : `${field}.${key}`);

/** A value `rule` accepts, kept as it is: strings, numbers and other leaves. */
export function leaf<T>(rule: Rule): Schema<T> {
  return {
    parse(value, field) {
      const error = rule(value, field);
      return error === undefined ? { ok: true, value: value as T } : problem(field, error);
    },
    pick: (value) => value,
  };
}

export function optional<T>(schema: Schema<T>): Optional<T> {
  return { optional: schema };
}

/** A JSON object with these members, checked and rebuilt in this order. */
export function object<S extends Shape>(shape: S): ObjectSchema<S> {
  const members = Object.entries(shape).map(([key, member]) =>
    "optional" in member
      ? { key, schema: member.optional, optional: true }
      : { key, schema: member as Schema<unknown>, optional: false },
  );
  return {
    shape,
    parse(value, field) {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        const name = field === "" ? "body" : field;
        return problem(name, `${name} must be a JSON object`);
      }
      const rebuilt: Record<string, unknown> = {};
      for (const { key, schema, optional } of members) {
        const raw = (value as Record<string, unknown>)[key];
        if (optional && raw === undefined) continue;
        const checked = schema.parse(raw, path(field, key));
        if (!checked.ok) return checked;
        rebuilt[key] = checked.value;
      }
      return { ok: true, value: rebuilt as ObjectOf<S> };
    },
    pick(value) {
      const rebuilt: Record<string, unknown> = {};
      for (const { key, schema, optional } of members) {
        const raw = (value as Record<string, unknown>)[key];
        if (!(optional && raw === undefined)) rebuilt[key] = schema.pick(raw);
      }
      return rebuilt as ObjectOf<S>;
    },
  };
}

/** A list of at most `max` items, each checked and rebuilt; items are named `field[i]`. */
export function list<T>(item: Schema<T>, max: number): Schema<readonly T[]> {
  return {
    parse(value, field) {
      if (!Array.isArray(value) || value.length > max) {
        return problem(field, `${field} must be a list of at most ${max} entries`);
      }
      const rebuilt: T[] = [];
      for (const [index, entry] of value.entries()) {
        const checked = item.parse(entry, `${field}[${index}]`);
        if (!checked.ok) return checked;
        rebuilt.push(checked.value);
      }
      return { ok: true, value: rebuilt };
    },
    pick: (value) => value.map((entry) => item.pick(entry)),
  };
}

/** The union of objects tagged by `type`, one shape per tag. */
export type Tagged<C extends Readonly<Record<string, Shape>>> = {
  [K in keyof C & string]: Flat<{ readonly type: K } & ObjectOf<C[K]>>;
}[keyof C & string];

export interface TaggedSchema<C extends Readonly<Record<string, Shape>>> extends Schema<Tagged<C>> {
  readonly cases: C;
  /** Whether `type` names one of the cases. */
  has(type: unknown): type is keyof C & string;
}

/**
 * Objects whose `type` picks their shape, rebuilt with `type` first; any other value is refused
 * with `unknownType`, naming the field `type`.
 */
export function tagged<C extends Readonly<Record<string, Shape>>>(
  cases: C,
  unknownType: string,
): TaggedSchema<C> {
  const shapes = new Map(Object.entries(cases).map(([type, shape]) => [type, object(shape)]));
  const has = (type: unknown): type is keyof C & string =>
    typeof type === "string" && shapes.has(type);
  return {
    cases,
    has,
    parse(value, field) {
      const type = (value as { type?: unknown } | null)?.type;
      if (typeof value !== "object" || !has(type)) return problem(path(field, "type"), unknownType);
      const checked = shapes.get(type)!.parse(value, field);
      return checked.ok ? { ok: true, value: { type, ...checked.value } as Tagged<C> } : checked;
    },
    pick: (value) => ({ type: value.type, ...shapes.get(value.type)!.pick(value) }) as Tagged<C>,
  };
}
