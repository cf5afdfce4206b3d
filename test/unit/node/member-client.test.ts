import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { RefusalLog } from "../../../lib/node/member-client.ts";

/** A RefusalLog on a clock the test moves, and the lines it logged. */
function refusalLog() {
  const lines: string[] = [];
  let now = 1_000_000;
  const log = new RefusalLog(
    (line) => lines.push(line),
    () => now,
  );
  return {
    log,
    lines,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

const leader = { id: 1, name: "node-1" };
const other = { id: 2, name: "node-2" };
const heartbeat = "POST /v1/internal/heartbeat";
const refused = (status: number, error: string) => ({ status, text: JSON.stringify({ error }) });

describe("refused internal-API calls in the log", () => {
  test("the very first refusal is one line, naming the member, the call, its reason and status", () => {
    const { log, lines } = refusalLog();
    log.heard(leader, heartbeat, refused(401, "unknown member or wrong member secret"));
    assert.deepEqual(lines, [
      "internal API: node-1 (node 1) refused POST /v1/internal/heartbeat: unknown member or wrong member secret (HTTP 401)",
    ]);
  });

  test("a member that refuses every call costs a line a minute, counting the calls in between", () => {
    const { log, lines, advance } = refusalLog();
    const version = refused(400, "node 3 speaks protocol 2.0, this node 1.2");
    for (let call = 0; call < 120; call++) {
      log.heard(leader, heartbeat, version);
      advance(1_000);
    }
    assert.deepEqual(lines, [
      `internal API: node-1 (node 1) refused ${heartbeat}: node 3 speaks protocol 2.0, this node 1.2 (HTTP 400)`,
      `internal API: node-1 (node 1) refused ${heartbeat}: node 3 speaks protocol 2.0, this node 1.2 (HTTP 400) (and 59 more since the last such line)`,
    ]);
  });

  test("each member and each kind of refusal has its own first line; 403 and the back-off's 429 count too", () => {
    const { log, lines } = refusalLog();
    log.heard(leader, heartbeat, refused(401, "wrong secret"));
    log.heard(leader, heartbeat, refused(401, "wrong secret"));
    log.heard(other, "GET /v1/internal/peers", refused(401, "wrong secret"));
    log.heard(leader, heartbeat, refused(429, "too many failed authentications"));
    log.heard(leader, heartbeat, refused(403, "node 3 has left the cluster"));
    assert.deepEqual(
      lines.map((line) => /refused .*\(HTTP \d+\)/.exec(line)?.[0]),
      [
        `refused ${heartbeat}: wrong secret (HTTP 401)`,
        "refused GET /v1/internal/peers: wrong secret (HTTP 401)",
        `refused ${heartbeat}: too many failed authentications (HTTP 429)`,
        `refused ${heartbeat}: node 3 has left the cluster (HTTP 403)`,
      ],
    );
    assert.ok(lines[1]!.startsWith("internal API: node-2 (node 2) "));
  });

  test("answers that are not refusals log nothing: 200, 404, 409, 503", () => {
    const { log, lines } = refusalLog();
    for (const status of [200, 204, 404, 409, 503]) {
      log.heard(leader, heartbeat, refused(status, "whatever"));
    }
    assert.deepEqual(lines, []);
  });

  test("a reason that is not JSON, empty, multi-line or huge stays one bounded, printable line", () => {
    const { log, lines } = refusalLog();
    log.heard(leader, heartbeat, { status: 401, text: "plain\nrefusal\u001b[31m" });
    log.heard(other, heartbeat, { status: 401, text: "" });
    log.heard(leader, heartbeat, refused(400, "x".repeat(10_000)));
    assert.equal(
      lines[0],
      `internal API: node-1 (node 1) refused ${heartbeat}: plain refusal [31m (HTTP 401)`,
    );
    assert.equal(
      lines[1],
      `internal API: node-2 (node 2) refused ${heartbeat}: no reason given (HTTP 401)`,
    );
    assert.equal(
      lines[2],
      `internal API: node-1 (node 1) refused ${heartbeat}: ${"x".repeat(300)}… (HTTP 400)`,
    );
  });
});
