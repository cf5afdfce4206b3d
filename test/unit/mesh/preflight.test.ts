import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type PreflightFacts,
  parseCapEff,
  preflightProblems,
} from "../../../lib/mesh/preflight.ts";

const good: PreflightFacts = {
  tun: "character-device",
  capEff: 0x1ffffffffffn,
  socketDir: "writable",
  socketAnswers: false,
  interfaceExists: false,
};

describe("preflight decisions", () => {
  it("passes a fully capable host, including one where the socket folder can still be created", () => {
    assert.deepEqual(preflightProblems("mill0", good), []);
    assert.deepEqual(preflightProblems("mill0", { ...good, socketDir: "creatable" }), []);
    assert.deepEqual(preflightProblems("mill0", { ...good, capEff: undefined }), []);
  });

  it("names the missing capability and the fix for each platform", () => {
    const [problem, ...rest] = preflightProblems("mill0", {
      ...good,
      capEff: 0x1ffffffffffn & ~(1n << 12n),
    });
    assert.equal(rest.length, 0);
    assert.match(problem!, /^CAP_NET_ADMIN is not in effect/);
    assert.match(problem!, /--cap-add NET_ADMIN --device \/dev\/net\/tun/);
    assert.match(problem!, /AmbientCapabilities=CAP_NET_ADMIN/);
    assert.match(problem!, /NET_ADMIN.*\/dev\/net\/tun device/);
  });

  it("explains a missing or wrong TUN device", () => {
    assert.match(
      preflightProblems("mill0", { ...good, tun: "missing" })[0]!,
      /^\/dev\/net\/tun does not exist: .*--device \/dev\/net\/tun/,
    );
    assert.match(
      preflightProblems("mill0", { ...good, tun: "other" })[0]!,
      /mknod \/dev\/net\/tun c 10 200/,
    );
  });

  it("explains an unwritable socket folder", () => {
    assert.match(
      preflightProblems("mill0", { ...good, socketDir: "not-writable" }, "/var/run/wireguard")[0]!,
      /^\/var\/run\/wireguard cannot be created or written/,
    );
  });

  it("refuses an interface name in use, by a socket or by an existing link", () => {
    assert.match(
      preflightProblems("mill0", { ...good, socketAnswers: true })[0]!,
      /mill0 is in use \(\/var\/run\/wireguard\/mill0\.sock answers\)/,
    );
    assert.match(
      preflightProblems("mill0", { ...good, interfaceExists: true })[0]!,
      /ip link del mill0/,
    );
    assert.equal(
      preflightProblems("mill0", { ...good, socketAnswers: true, interfaceExists: true }).length,
      1,
    );
  });

  it("lists every problem, one line each", () => {
    const problems = preflightProblems("mill0", {
      tun: "missing",
      capEff: 0n,
      socketDir: "not-writable",
      socketAnswers: true,
      interfaceExists: true,
    });
    assert.equal(problems.length, 4);
    for (const problem of problems) assert.doesNotMatch(problem, /\n/);
  });

  it("reads CapEff from /proc/self/status", () => {
    assert.equal(
      parseCapEff(
        "Name:\tnode\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\nCapBnd:\t0\n",
      ),
      0x1ffffffffffn,
    );
    assert.equal(parseCapEff("Name:\tnode\n"), undefined);
  });
});
