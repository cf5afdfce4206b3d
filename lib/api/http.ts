/**
 * Request plumbing shared by the public and internal APIs: JSON errors, bounded body reading,
 * deadlines, and the mapping of "cluster unavailable" failures to 503.
 * Owns: how a failure becomes a response. Must not touch: cluster decisions, node:http.
 */

import type { Context, Env, Hono } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { ProposalLostError } from "../raft/driver.ts";
import { NONE, NotLeaderError } from "../raft/types.ts";
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

export type JsonBody =
  | { readonly ok: true; readonly value: unknown; readonly bytes: Uint8Array<ArrayBuffer> }
  | { readonly ok: false; readonly response: Response };

/**
 * Reads the body as JSON, refusing more than MAX_BODY_BYTES whether the client announced it in
 * Content-Length or not (the stream is counted as it arrives and abandoned past the limit), a
 * declared media type other than JSON (415), and nesting deeper than MAX_JSON_DEPTH (400).
 */
export async function readJson(c: Context): Promise<JsonBody> {
  const tooLarge = () => ({
    ok: false as const,
    response: fail(c, 413, `request body is larger than ${MAX_BODY_BYTES} bytes`),
  });
  const contentType = c.req.header("content-type");
  if (contentType !== undefined && !isJsonMediaType(contentType)) {
    return {
      ok: false,
      response: fail(
        c,
        415,
        `content type ${JSON.stringify(contentType.slice(0, 80))} is not JSON: send Content-Type: application/json`,
      ),
    };
  }
  const declared = Number(c.req.header("content-length") ?? 0);
  if (declared > MAX_BODY_BYTES) return tooLarge();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = c.req.raw.body?.getReader();
  while (reader) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_BODY_BYTES) {
      await reader.cancel();
      return tooLarge();
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return { ok: false, response: fail(c, 400, "body is not valid UTF-8: send JSON text", "body") };
  }
  if (jsonTooDeep(text)) {
    return {
      ok: false,
      response: fail(
        c,
        400,
        `body nests arrays or objects deeper than ${MAX_JSON_DEPTH} levels: send the documented shape`,
        "body",
      ),
    };
  }
  try {
    return { ok: true, value: JSON.parse(text), bytes };
  } catch {
    return {
      ok: false,
      response: fail(c, 400, "body is not valid JSON: send a JSON object", "body"),
    };
  }
}

export class DeadlineError extends Error {
  override name = "DeadlineError";
}

/** `promise`, or a DeadlineError after `ms`. */
export function deadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineError(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** 503 for failures that mean "the cluster cannot do this right now"; anything else is rethrown. */
export function unavailable(c: Context, deps: ApiDeps, error: unknown): Response {
  if (error instanceof NotLeaderError) {
    return fail(
      c,
      503,
      error.leader === NONE
        ? "no leader: the cluster has lost quorum or is electing one; retry once a majority of nodes is up"
        : `leadership moved to node ${error.leader} during the request; retry`,
    );
  }
  if (error instanceof ProposalLostError) {
    return fail(c, 503, "leadership changed before the request was committed; retry");
  }
  if (error instanceof DeadlineError) {
    return fail(
      c,
      503,
      `no quorum: the cluster did not commit within ${deps.commitTimeoutMs} ms; a majority of nodes must be up`,
    );
  }
  throw error;
}

/** Unknown routes: 404 without detail. Unexpected errors: a bare 500, reported to the node. */
export function finish<E extends Env>(app: Hono<E>, deps: ApiDeps): Hono<E> {
  app.notFound((c) => fail(c, 404, "not found"));
  app.onError((error, c) => {
    deps.onError(error);
    return fail(c, 500, "internal error");
  });
  return app;
}
