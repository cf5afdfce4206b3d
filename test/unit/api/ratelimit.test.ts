import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { guardAuthFailures } from "../../../lib/api/guard.ts";
import { AUTH_BACKOFF, AuthBackoff } from "../../../lib/api/ratelimit.ts";
import { sourceKey } from "../../../lib/shared/source-key.ts";

const ATTACKER = "203.0.113.7";
const CLIENT = "198.51.100.2";

function failTimes(backoff: AuthBackoff, address: string, times: number, now: number) {
  return Array.from({ length: times }, () => backoff.failed(address, now));
}

describe("AuthBackoff", () => {
  test("the first five failures are free, then blocks double up to the cap", () => {
    const backoff = new AuthBackoff();
    const outcomes = failTimes(backoff, ATTACKER, 5, 0);
    assert.deepEqual(
      outcomes.map((outcome) => outcome.blockMs),
      [0, 0, 0, 0, 0],
    );
    assert.deepEqual(backoff.admit(ATTACKER, 0), { allowed: true });
    const blocks: number[] = [];
    let now = 0;
    for (let i = 0; i < 12; i++) {
      const { blockMs } = backoff.failed(ATTACKER, now);
      blocks.push(blockMs);
      assert.deepEqual(backoff.admit(ATTACKER, now + blockMs - 1), {
        allowed: false,
        retryAfterMs: 1,
      });
      now += blockMs;
      assert.deepEqual(backoff.admit(ATTACKER, now), { allowed: true });
    }
    assert.deepEqual(
      blocks,
      [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300].map((s) => s * 1000),
    );
  });

  test("another address is never slowed by an attacker", () => {
    const backoff = new AuthBackoff();
    failTimes(backoff, ATTACKER, 20, 0);
    assert.equal(backoff.admit(ATTACKER, 0).allowed, false);
    assert.deepEqual(backoff.admit(CLIENT, 0), { allowed: true });
    assert.equal(backoff.failed(CLIENT, 0).blockMs, 0);
  });

  test("a source quiet for a whole window after its block is forgotten", () => {
    const backoff = new AuthBackoff();
    failTimes(backoff, ATTACKER, 6, 0);
    assert.equal(backoff.admit(ATTACKER, 999).allowed, false);
    assert.equal(backoff.size, 1);
    assert.deepEqual(backoff.admit(ATTACKER, 1000 + AUTH_BACKOFF.windowMs), { allowed: true });
    assert.equal(backoff.size, 0);
    assert.equal(backoff.failed(ATTACKER, 1000 + AUTH_BACKOFF.windowMs).failures, 1);
  });

  test("a failure soon after a block ends doubles the next block", () => {
    const backoff = new AuthBackoff();
    failTimes(backoff, ATTACKER, 6, 0);
    assert.equal(backoff.failed(ATTACKER, 1000 + AUTH_BACKOFF.windowMs - 1).blockMs, 2000);
  });

  test("a blocked source is logged once per window", () => {
    const backoff = new AuthBackoff();
    const logs = failTimes(backoff, ATTACKER, 8, 0).map((outcome) => outcome.log);
    assert.deepEqual(logs, [false, false, false, false, false, true, false, false]);
    assert.equal(backoff.failed(ATTACKER, AUTH_BACKOFF.windowMs - 1).log, false);
    assert.equal(backoff.failed(ATTACKER, AUTH_BACKOFF.windowMs).log, true);
  });

  test("memory is bounded: the least recently failing source is dropped first", () => {
    const backoff = new AuthBackoff({ ...AUTH_BACKOFF, maxSources: 3 });
    failTimes(backoff, "10.0.0.1", 6, 0);
    for (const address of ["10.0.0.2", "10.0.0.3", "10.0.0.1", "10.0.0.4"]) {
      backoff.failed(address, 1);
    }
    assert.equal(backoff.size, 3);
    assert.equal(backoff.admit("10.0.0.1", 2).allowed, false, "recently active, kept");
    assert.equal(backoff.failed("10.0.0.2", 2).failures, 1, "oldest, dropped");
  });

  test("IPv6 sources count per /64 and IPv4-mapped addresses as IPv4", () => {
    assert.equal(sourceKey("::ffff:127.0.0.1"), "127.0.0.1");
    assert.equal(sourceKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
    assert.equal(sourceKey("2001:db8:1:2::ffff"), "2001:db8:1:2::/64");
    assert.equal(sourceKey("2001:0db8:0001:0002:0:0:0:9"), "2001:db8:1:2::/64");
    assert.equal(sourceKey("::1"), "0:0:0:0::/64");
    const backoff = new AuthBackoff();
    failTimes(backoff, "2001:db8:1:2::1", 3, 0);
    failTimes(backoff, "2001:db8:1:2::2", 3, 0);
    assert.equal(backoff.admit("2001:db8:1:2::3", 0).allowed, false);
    assert.equal(backoff.admit("2001:db8:1:3::1", 0).allowed, true);
  });
});

describe("guardAuthFailures", () => {
  /** An app that accepts "Bearer right" and answers 401 to anything else, as requireToken does. */
  function guarded() {
    let now = 0;
    const warnings: string[] = [];
    const backoff = new AuthBackoff();
    const handler = guardAuthFailures(
      async (request) => {
        const authorization = request.headers.get("authorization") ?? "";
        return new Response("{}", { status: authorization === "Bearer right" ? 200 : 401 });
      },
      { backoff, now: () => now, warn: (line) => warnings.push(line) },
    );
    const admitted = () => backoff.admit(ATTACKER, now).allowed;
    return { handler, warnings, admitted, tick: (ms: number) => (now += ms) };
  }
  const request = (secret = "wrong-secret") =>
    new Request("https://node/v1/status", { headers: { authorization: `Bearer ${secret}` } });

  test("401s from one source lead to 429 with Retry-After for its failures", async () => {
    const { handler, warnings } = guarded();
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await handler(request(), ATTACKER)).status);
    assert.deepEqual(statuses, [401, 401, 401, 401, 401, 401, 429]);
    const blocked = await handler(request(), ATTACKER);
    assert.equal(blocked.status, 429);
    assert.ok(Number(blocked.headers.get("retry-after")) >= 1);
    assert.match(((await blocked.json()) as { error: string }).error, /too many failed/);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /6 failed authentications from 203\.0\.113\.7.*\/v1\/status/);
    assert.doesNotMatch(warnings[0]!, /wrong-secret/);
    assert.equal((await handler(request(), CLIENT)).status, 401, "others are not slowed");
  });

  test("a valid credential from a blocked source is answered: the credential is checked first", async () => {
    const { handler } = guarded();
    for (let i = 0; i < 50; i++) await handler(request(), ATTACKER);
    assert.equal((await handler(request(), ATTACKER)).status, 429, "the source is blocked");
    for (let i = 0; i < 5; i++) {
      assert.equal((await handler(request("right"), ATTACKER)).status, 200);
      assert.equal((await handler(request(), ATTACKER)).status, 429, "its failures stay slowed");
    }
  });

  test("successful requests are never counted", async () => {
    const { handler, warnings } = guarded();
    for (let i = 0; i < 20; i++)
      assert.equal((await handler(request("right"), ATTACKER)).status, 200);
    assert.equal((await handler(request(), ATTACKER)).status, 401);
    assert.deepEqual(warnings, []);
  });

  test("the block lifts after Retry-After", async () => {
    const { handler, tick, admitted } = guarded();
    for (let i = 0; i < 6; i++) await handler(request(), ATTACKER);
    const blocked = await handler(request(), ATTACKER);
    assert.equal(blocked.status, 429);
    assert.equal(blocked.headers.get("retry-after"), "1");
    // That refused attempt was a seventh failure: the block grew to 2 s from when it came.
    tick(1999);
    assert.equal(admitted(), false);
    tick(1);
    assert.equal((await handler(request(), ATTACKER)).status, 401);
  });
});
