/**
 * Request plumbing shared by the public and internal APIs: JSON errors, what a body must be
 * before a route reads it, and how a failure becomes a response.
 * Owns: the body limits (hono's bodyLimit and validator, plus the checks they lack), the one
 * mapping from a refused command to its status, and the app's error handler, which answers 503
 * when the cluster cannot act right now. Must not touch: cluster decisions, node:http.
 */

import type { Context, Env, Hono, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { every } from "hono/combine";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { validator } from "hono/validator";
import type { ApplyErrorCode, ApplyResult } from "../cluster/commands.ts";
import { ProposalLostError } from "../raft/driver.ts";
import { NONE, NotLeaderError } from "../raft/types.ts";
import { DeadlineError } from "../shared/deadline.ts";
import type { Checked } from "../shared/fields.ts";
import type { ApiDeps } from "./deps.ts";
import { isJsonMediaType, jsonTooDeep, MAX_JSON_DEPTH } from "./limits.ts";
import { type ErrorBody, MAX_BODY_BYTES } from "./wire.ts";

export function fail(
  c: Context,
  status: ContentfulStatusCode,
  error: string,
  field?: string,
): Response {
  const body: ErrorBody = field === undefined ? { error } : { error, field };
  return c.json(body, status);
}

/** Why the state machine refused a command, as apply() answered it. */
export type Refusal = Extract<ApplyResult, { ok: false }>;

const REFUSAL_STATUS: Partial<Record<ApplyErrorCode, ContentfulStatusCode>> = {
  invalid: 400,
  "unknown-workload": 404,
  uninitialised: 503,
};

/** A route's outcome decided on the leader: the body to answer with, or a refusal. */
export type Outcome<T> = { readonly ok: true; readonly answer: T } | Refusal;

/** A refused command: 400 invalid, 404 unknown workload, 503 uninitialised, 409 otherwise. */
export function refused(c: Context, refusal: Refusal): Response {
  return fail(c, REFUSAL_STATUS[refusal.code] ?? 409, refusal.error, refusal.field);
}

/**
 * What a JSON body must be before its route's validator sees it (hono's json validator parses
 * it): a declared media type of JSON, or none (415 otherwise); valid UTF-8 (hono would replace
 * bad bytes); nested at most MAX_JSON_DEPTH deep, so a deep payload is never parsed (400).
 */
const jsonText: MiddlewareHandler = async (c, next) => {
  const contentType = c.req.header("content-type");
  if (contentType !== undefined && !isJsonMediaType(contentType)) {
    return fail(
      c,
      415,
      `content type ${JSON.stringify(contentType.slice(0, 80))} is not JSON: send Content-Type: application/json`,
    );
  }
  if (contentType === undefined) {
    // hono's validator reads a body as JSON only when it says so; Mill reads an unlabelled one.
    const headers = new Headers(c.req.raw.headers);
    headers.set("content-type", "application/json");
    c.req.raw = new Request(c.req.raw, { headers });
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(await c.req.arrayBuffer());
  } catch {
    return fail(c, 400, "body is not valid UTF-8: send JSON text", "body");
  }
  if (jsonTooDeep(text)) {
    return fail(
      c,
      400,
      `body nests arrays or objects deeper than ${MAX_JSON_DEPTH} levels: send the documented shape`,
      "body",
    );
  }
  await next();
};

/**
 * Every JSON body passes this first: at most MAX_BODY_BYTES (413), whether the client announced
 * its size or not (hono's bodyLimit counts the stream as it arrives), then jsonText's checks.
 */
export const jsonBody: MiddlewareHandler = every(
  bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: (c) => fail(c, 413, `request body is larger than ${MAX_BODY_BYTES} bytes`),
  }),
  jsonText,
);

/**
 * Hono's json validator over a room's own checks: 400 naming the field at fault, or the checked
 * value for the route as `c.req.valid("json")`. Goes after jsonBody.
 */
export function validJson<T>(check: (value: unknown, c: Context) => Checked<T>) {
  return validator("json", (value, c) => {
    const checked = check(value, c);
    return checked.ok ? checked.value : fail(c, 400, checked.problem.error, checked.problem.field);
  });
}

/** Why the cluster cannot do this right now, for failures that mean so; undefined otherwise. */
function unavailable(error: unknown, commitTimeoutMs: number): string | undefined {
  if (error instanceof NotLeaderError) {
    return error.leader === NONE
      ? "no leader: the cluster has lost quorum or is electing one; retry once a majority of nodes is up"
      : `leadership moved to node ${error.leader} during the request; retry`;
  }
  if (error instanceof ProposalLostError) {
    return "leadership changed before the request was committed; retry";
  }
  if (error instanceof DeadlineError) {
    return `no quorum: the cluster did not commit within ${commitTimeoutMs} ms; a majority of nodes must be up`;
  }
  return undefined;
}

/**
 * Unknown routes: 404 without detail. Failures thrown by a route: 503 when the cluster cannot
 * act now (no leader, leadership lost, no commit in time), 400 for a body that is not JSON
 * (hono's validator throws that), else a bare 500 reported to the node.
 */
export function finish<E extends Env>(app: Hono<E>, deps: ApiDeps): Hono<E> {
  app.notFound((c) => fail(c, 404, "not found"));
  app.onError((error, c) => {
    const reason = unavailable(error, deps.commitTimeoutMs);
    if (reason !== undefined) return fail(c, 503, reason);
    if (error instanceof HTTPException && error.status === 400) {
      return fail(c, 400, "body is not valid JSON: send a JSON object", "body");
    }
    deps.onError(error);
    return fail(c, 500, "internal error");
  });
  return app;
}
