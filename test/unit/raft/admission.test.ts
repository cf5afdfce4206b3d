import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Admission, LogThrottle } from "../../../lib/raft/transport/admission.ts";

const U = "unprivileged";
const P = "privileged";

describe("raft connection admission", () => {
  test("caps connections per source, then in total, and gives slots back", () => {
    const admission = new Admission({ perSource: 2, total: 3 });
    assert.ok(admission.admit("10.0.0.1", U).ok);
    assert.ok(admission.admit("10.0.0.1", U).ok);
    const third = admission.admit("10.0.0.1", U);
    assert.equal(third.ok, false);
    assert.match(!third.ok ? third.reason : "", /10\.0\.0\.1 already has 2 connections .*limit 2/);
    assert.ok(admission.admit("10.0.0.2", U).ok);
    const full = admission.admit("10.0.0.3", U);
    assert.equal(full.ok, false);
    assert.match(
      !full.ok ? full.reason : "",
      /3 connections have not authenticated yet \(limit 3 from ports 1024 and above\)/,
    );
    admission.release("10.0.0.1", U);
    assert.equal(admission.held(U, "10.0.0.1"), 1);
    assert.equal(admission.held(U), 2);
    assert.ok(admission.admit("10.0.0.3", U).ok);
  });

  test("releasing a source that holds nothing changes nothing", () => {
    const admission = new Admission({ perSource: 1, total: 1 });
    admission.release("10.0.0.9", U);
    assert.equal(admission.held(U), 0);
    assert.ok(admission.admit("10.0.0.9", U).ok);
    admission.release("10.0.0.9", U);
    admission.release("10.0.0.9", U);
    assert.equal(admission.held(U), 0);
    assert.ok(admission.admit("10.0.0.8", U).ok);
  });

  test("a source with its unprivileged slots full still gets a privileged-port slot, and the reverse", () => {
    const admission = new Admission({ perSource: 2, total: 3 });
    // A local user on 10.0.0.1 fills what its ports may take.
    assert.ok(admission.admit("10.0.0.1", U).ok);
    assert.ok(admission.admit("10.0.0.1", U).ok);
    const refused = admission.admit("10.0.0.1", U);
    assert.match(!refused.ok ? refused.reason : "", /limit 2 from ports 1024 and above/);
    // The member's agent on the same address, dialling from a reserved port, is taken.
    assert.ok(admission.admit("10.0.0.1", P).ok);
    assert.ok(admission.admit("10.0.0.1", P).ok);
    const privileged = admission.admit("10.0.0.1", P);
    assert.match(!privileged.ok ? privileged.reason : "", /limit 2 from ports below 1024/);
    assert.equal(admission.held(P, "10.0.0.1"), 2);
    assert.equal(admission.held(U, "10.0.0.1"), 2);
    // The totals are per pool too: unprivileged sources everywhere leave the privileged total.
    assert.ok(admission.admit("10.0.0.2", U).ok);
    assert.equal(admission.admit("10.0.0.3", U).ok, false, "the unprivileged total is full");
    assert.ok(admission.admit("10.0.0.3", P).ok, "the privileged total is not");
    assert.equal(admission.admit("10.0.0.4", P).ok, false, "now it is");
    assert.ok(!admission.admit("10.0.0.4", P).ok);
    // Releasing in one pool frees that pool only.
    admission.release("10.0.0.1", U);
    assert.equal(admission.held(P, "10.0.0.1"), 2);
    assert.equal(admission.held(U, "10.0.0.1"), 1);
    assert.ok(admission.admit("10.0.0.4", U).ok);
    admission.release("10.0.0.1", P);
    assert.ok(admission.admit("10.0.0.4", P).ok);
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
