import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Admission, LogThrottle } from "../../../lib/raft/transport/admission.ts";

describe("raft connection admission", () => {
  test("caps connections per source, then in total, and gives slots back", () => {
    const admission = new Admission({ perSource: 2, total: 3 });
    assert.ok(admission.admit("10.0.0.1").ok);
    assert.ok(admission.admit("10.0.0.1").ok);
    const third = admission.admit("10.0.0.1");
    assert.equal(third.ok, false);
    assert.match(!third.ok ? third.reason : "", /10\.0\.0\.1 already has 2 connections .*limit 2/);
    assert.ok(admission.admit("10.0.0.2").ok);
    const full = admission.admit("10.0.0.3");
    assert.equal(full.ok, false);
    assert.match(
      !full.ok ? full.reason : "",
      /3 connections have not authenticated yet \(limit 3\)/,
    );
    admission.release("10.0.0.1");
    assert.equal(admission.held("10.0.0.1"), 1);
    assert.equal(admission.held(), 2);
    assert.ok(admission.admit("10.0.0.3").ok);
  });

  test("releasing a source that holds nothing changes nothing", () => {
    const admission = new Admission({ perSource: 1, total: 1 });
    admission.release("10.0.0.9");
    assert.equal(admission.held(), 0);
    assert.ok(admission.admit("10.0.0.9").ok);
    admission.release("10.0.0.9");
    admission.release("10.0.0.9");
    assert.equal(admission.held(), 0);
    assert.ok(admission.admit("10.0.0.8").ok);
  });
});

describe("log throttle", () => {
  test("one line per key and window", () => {
    const throttle = new LogThrottle(1000, 10);
    assert.equal(throttle.allow("a", 0), true);
    assert.equal(throttle.allow("a", 999), false);
    assert.equal(throttle.allow("b", 999), true);
    assert.equal(throttle.allow("a", 1000), true);
  });

  test("forgets the oldest key beyond its size", () => {
    const throttle = new LogThrottle(1000, 2);
    throttle.allow("a", 0);
    throttle.allow("b", 0);
    throttle.allow("c", 0);
    assert.equal(throttle.allow("a", 1), true, "a was forgotten");
    assert.equal(throttle.allow("c", 1), false);
  });
});
