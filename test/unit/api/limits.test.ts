import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Hono } from "hono";
import { finish, jsonBody, validJson } from "../../../lib/api/http.ts";
import { isJsonMediaType, jsonTooDeep, MAX_JSON_DEPTH } from "../../../lib/api/limits.ts";
import { MAX_BODY_BYTES } from "../../../lib/api/wire.ts";
import { fakeNode } from "./fakes.ts";

const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;

describe("jsonTooDeep", () => {
  test("counts arrays and objects, up to the limit inclusive", () => {
    assert.equal(jsonTooDeep(nested(MAX_JSON_DEPTH)), false);
    assert.equal(jsonTooDeep(nested(MAX_JSON_DEPTH + 1)), true);
    assert.equal(jsonTooDeep('{"a":{"b":[1,{"c":2}]}}', 3), true);
    assert.equal(jsonTooDeep('{"a":{"b":[1,{"c":2}]}}', 4), false);
    assert.equal(jsonTooDeep("[[],[],[],[]]", 2), false, "siblings do not add up");
  });

  test("ignores brackets inside strings, escaped quotes included", () => {
    assert.equal(jsonTooDeep(`{"name":"${"[".repeat(100)}"}`, 1), false);
    assert.equal(jsonTooDeep(`{"name":"\\"${"{".repeat(100)}"}`, 1), false);
    assert.equal(jsonTooDeep(`{"name":"\\\\","x":[[]]}`, 2), true, "an escaped backslash ends");
  });
});

test("isJsonMediaType accepts parameters and case, nothing else", () => {
  assert.equal(isJsonMediaType("application/json"), true);
  assert.equal(isJsonMediaType("Application/JSON; charset=utf-8"), true);
  for (const other of ["text/plain", "application/cbor", "application/json-patch+json", ""]) {
    assert.equal(isJsonMediaType(other), false, other);
  }
});

describe("jsonBody and validJson", () => {
  const app = finish(new Hono(), fakeNode().deps).post(
    "/",
    jsonBody,
    validJson((value) =>
      typeof value === "object" && value !== null && "a" in value
        ? { ok: true, value }
        : { ok: false, problem: { field: "a", error: "a is missing" } },
    ),
    (c) => c.json({ parsed: c.req.valid("json") }),
  );
  const send = (body: string | Uint8Array<ArrayBuffer>, contentType?: string) =>
    app.request("/", {
      method: "POST",
      body,
      headers: contentType === undefined ? {} : { "content-type": contentType },
    });
  const error = async (response: Response) => (await response.json()) as Record<string, string>;

  test("deep nesting is 400 naming the limit", async () => {
    const response = await send(`{"a":${nested(MAX_JSON_DEPTH)}}`, "application/json");
    assert.equal(response.status, 400);
    assert.deepEqual(await error(response), {
      error: `body nests arrays or objects deeper than ${MAX_JSON_DEPTH} levels: send the documented shape`,
      field: "body",
    });
  });

  test("a declared media type other than JSON is 415", async () => {
    const response = await send('{"a":1}', "text/plain");
    assert.equal(response.status, 415);
    assert.match((await error(response)).error, /"text\/plain" is not JSON/);
  });

  test("invalid UTF-8 and invalid JSON are 400 on the body", async () => {
    const badUtf8 = await send(new Uint8Array([0x7b, 0xff, 0x7d]), "application/json");
    assert.equal(badUtf8.status, 400);
    assert.deepEqual(await error(badUtf8), {
      error: "body is not valid UTF-8: send JSON text",
      field: "body",
    });
    const truncated = await send('{"a":', "application/json");
    assert.equal(truncated.status, 400);
    assert.deepEqual(await error(truncated), {
      error: "body is not valid JSON: send a JSON object",
      field: "body",
    });
  });

  test("an oversized body is 413 and a fitting one parses", async () => {
    const big = await send(`"${"x".repeat(MAX_BODY_BYTES)}"`, "application/json");
    assert.equal(big.status, 413);
    const fits = await send('{"a":[1,2]}', "application/json");
    assert.deepEqual(await fits.json(), { parsed: { a: [1, 2] } });
  });

  test("a body without a media type is read as JSON", async () => {
    const response = await send(new TextEncoder().encode('{"a":3}'));
    assert.deepEqual([response.status, await response.json()], [200, { parsed: { a: 3 } }]);
  });

  test("the route's own check answers 400 naming its field", async () => {
    const response = await send('{"b":1}', "application/json");
    assert.equal(response.status, 400);
    assert.deepEqual(await error(response), { error: "a is missing", field: "a" });
  });
});
