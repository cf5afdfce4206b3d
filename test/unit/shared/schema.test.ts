import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Rule } from "../../../lib/shared/fields.ts";
import { type Infer, leaf, list, object, optional, tagged } from "../../../lib/shared/schema.ts";

const isText: Rule = (value, field) =>
  typeof value === "string" ? undefined : `${field} is not text`;
const isCount: Rule = (value, field) =>
  Number.isSafeInteger(value) && (value as number) >= 0 ? undefined : `${field} is not a count`;

const point = object({ x: leaf<number>(isCount), label: optional(leaf<string>(isText)) });
const shape = object({
  name: leaf<string>(isText),
  at: point,
  path: list(point, 3),
});
const event = tagged(
  { Moved: { to: point }, Named: { name: leaf<string>(isText) } },
  "event has no known type",
);

describe("schema", () => {
  test("an object is rebuilt from its declared members only, in declaration order", () => {
    const parsed = shape.parse(
      { path: [{ x: 2, extra: true }], extra: 1, at: { label: "a", x: 1 }, name: "n" },
      "",
    );
    assert.ok(parsed.ok);
    assert.deepEqual(parsed.value, { name: "n", at: { x: 1, label: "a" }, path: [{ x: 2 }] });
    assert.deepEqual(Object.keys(parsed.value), ["name", "at", "path"]);
    assert.deepEqual(Object.keys(parsed.value.at), ["x", "label"]);
  });

  test("an absent optional member stays absent; a present one is checked", () => {
    const bare = point.parse({ x: 0 }, "p");
    assert.ok(bare.ok);
    assert.equal(Object.hasOwn(bare.value, "label"), false);
    assert.deepEqual(point.parse({ x: 0, label: 7 }, "p"), {
      ok: false,
      problem: { field: "p.label", error: "p.label is not text" },
    });
  });

  test("problems name the first failing field by its path", () => {
    const cases: [unknown, string, string][] = [
      [null, "body", "body must be a JSON object"],
      [[], "body", "body must be a JSON object"],
      [{ name: 1 }, "name", "name is not text"],
      [{ name: "n", at: "here" }, "at", "at must be a JSON object"],
      [{ name: "n", at: { x: -1 } }, "at.x", "at.x is not a count"],
      [{ name: "n", at: { x: 1 }, path: {} }, "path", "path must be a list of at most 3 entries"],
      [
        { name: "n", at: { x: 1 }, path: [{}, {}, {}, {}] },
        "path",
        "path must be a list of at most 3 entries",
      ],
      [
        { name: "n", at: { x: 1 }, path: [{ x: 1 }, { x: "2" }] },
        "path[1].x",
        "path[1].x is not a count",
      ],
    ];
    for (const [value, field, error] of cases) {
      assert.deepEqual(shape.parse(value, ""), { ok: false, problem: { field, error } }, field);
    }
  });

  test("a tagged union picks the shape by type, puts type first, and refuses unknown types", () => {
    const moved = event.parse({ to: { x: 3 }, type: "Moved", name: "dropped" }, "");
    assert.ok(moved.ok);
    assert.deepEqual(moved.value, { type: "Moved", to: { x: 3 } });
    assert.deepEqual(Object.keys(moved.value), ["type", "to"]);
    for (const value of [{ type: "Jumped" }, { type: "toString" }, null, "Moved", {}]) {
      assert.deepEqual(event.parse(value, ""), {
        ok: false,
        problem: { field: "type", error: "event has no known type" },
      });
    }
    assert.equal(event.has("Named"), true);
    assert.equal(event.has("hasOwnProperty"), false);
  });

  test("pick rebuilds a typed value like parse, without checking it", () => {
    const value = { name: "n", at: { x: 1 }, path: [{ x: 2, label: "b" }] };
    const picked = shape.pick({ ...value, extra: 1 } as Infer<typeof shape>);
    assert.deepEqual(picked, value);
    assert.notEqual(picked.path, value.path);
    assert.deepEqual(event.pick({ type: "Named", name: "x", to: 1 } as Infer<typeof event>), {
      type: "Named",
      name: "x",
    });
  });

  test("the types follow the declaration", () => {
    const typed: Infer<typeof shape> = { name: "n", at: { x: 1 }, path: [] };
    const named: Infer<typeof event> = { type: "Named", name: "n" };
    // @ts-expect-error a required member is missing
    const missing: Infer<typeof shape> = { name: "n", path: [] };
    // @ts-expect-error a case carries only its own members
    const mixed: Infer<typeof event> = { type: "Named", to: { x: 1 } };
    assert.ok(typed && named && missing && mixed);
  });
});
