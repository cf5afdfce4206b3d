import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  afterFailedPort,
  firstReservedPort,
  isPrivilegedPort,
  RESERVED_PORTS,
  RESERVED_TRIES,
  unreservedPortsNote,
} from "../../../lib/shared/reserved-ports.ts";

describe("reserved source ports", () => {
  test("the first port spreads over the range and stays inside it", () => {
    assert.equal(firstReservedPort(0), RESERVED_PORTS.first);
    assert.equal(firstReservedPort(0.999_999_9), RESERVED_PORTS.last);
    assert.equal(firstReservedPort(0.5), 812);
    assert.ok(RESERVED_PORTS.last < 1024, "every reserved port is privileged");
  });

  test("a port in use moves to the next one, wrapping at the end of the range", () => {
    assert.deepEqual(afterFailedPort(700, 1, "taken"), { port: 701 });
    assert.deepEqual(afterFailedPort(RESERVED_PORTS.last, 3, "taken"), {
      port: RESERVED_PORTS.first,
    });
  });

  test("after RESERVED_TRIES ports in use, the connection leaves from an ordinary port", () => {
    assert.ok("port" in afterFailedPort(700, RESERVED_TRIES - 1, "taken"));
    const next = afterFailedPort(700, RESERVED_TRIES, "taken");
    assert.ok("ephemeral" in next && !next.forbidden);
    assert.match(next.ephemeral, /32 reserved ports \(600-1023\) were in use/);
  });

  test("a process that may not bind low ports falls back at once and for good", () => {
    const next = afterFailedPort(700, 1, "forbidden");
    assert.ok("ephemeral" in next && next.forbidden);
    assert.match(next.ephemeral, /may not bind ports below 1024 .*CAP_NET_BIND_SERVICE/);
  });

  test("walking the whole sequence from a random start visits distinct reserved ports", () => {
    let port = firstReservedPort(0.99);
    const seen = new Set([port]);
    for (let tries = 1; ; tries++) {
      const next = afterFailedPort(port, tries, "taken");
      if (!("port" in next)) break;
      port = next.port;
      assert.ok(isPrivilegedPort(port) && port >= RESERVED_PORTS.first, `${port}`);
      seen.add(port);
    }
    assert.equal(seen.size, RESERVED_TRIES);
  });

  test("privileged ports are 1-1023", () => {
    assert.deepEqual([undefined, 0, 1, 600, 1023, 1024, 40_000].map(isPrivilegedPort), [
      false,
      false,
      true,
      true,
      true,
      false,
      false,
    ]);
  });
});

describe("the note on hosts that let anyone bind low ports", () => {
  test("nothing to say where only root binds below 1024, or the setting is absent", () => {
    assert.equal(unreservedPortsNote("1024\n"), undefined);
    assert.equal(unreservedPortsNote("2000\n"), undefined);
    assert.equal(unreservedPortsNote(undefined), undefined);
    assert.equal(unreservedPortsNote("garbage"), undefined);
  });

  test("one line naming the setting where anyone may (Docker sets 0 in a container)", () => {
    assert.match(
      unreservedPortsNote("0\n") ?? "",
      /^net\.ipv4\.ip_unprivileged_port_start is 0 on this host: any local user may bind ports from 0 up.*set it to 1024/,
    );
    assert.match(unreservedPortsNote("1023") ?? "", /is 1023 on this host/);
  });
});
