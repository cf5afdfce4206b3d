import assert from "node:assert/strict";
import { test } from "node:test";
import {
  advertiseProblem,
  defaultDataDir,
  defaultRouteInterface,
  pickAdvertise,
} from "../../../lib/node/host.ts";

test("data dir: MILL_DATA_DIR, else /var/lib/mill for root, else XDG state", () => {
  assert.equal(defaultDataDir({ MILL_DATA_DIR: "/d" }, 0), "/d");
  assert.equal(defaultDataDir({}, 0), "/var/lib/mill");
  assert.equal(defaultDataDir({ XDG_STATE_HOME: "/home/u/.st" }, 1000), "/home/u/.st/mill");
});

const ROUTES = `Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth1\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
`;

test("the default route's interface is found in /proc/net/route", () => {
  assert.equal(defaultRouteInterface(ROUTES), "eth0");
  assert.equal(defaultRouteInterface(ROUTES.split("\n").slice(0, 2).join("\n")), undefined);
});

test("advertise: the default interface's IPv4, never a bridge", () => {
  const interfaces = {
    eth0: [
      { address: "fd00::2", family: "IPv6", internal: false },
      { address: "10.0.0.5", family: "IPv4", internal: false },
    ],
    docker0: [{ address: "172.17.0.1", family: "IPv4", internal: false }],
  };
  assert.equal(pickAdvertise("eth0", interfaces), "10.0.0.5");
  assert.equal(pickAdvertise("docker0", interfaces), undefined);
  assert.equal(pickAdvertise(undefined, interfaces), undefined);
});

test("advertise: 0.0.0.0, loopback (unless allowed) and docker addresses are refused", () => {
  assert.match(advertiseProblem("0.0.0.0", true) ?? "", /not an address other nodes can reach/);
  assert.match(advertiseProblem("127.0.0.2", false) ?? "", /loopback/);
  assert.equal(advertiseProblem("127.0.0.2", true), undefined);
  assert.match(advertiseProblem("172.17.0.3", false) ?? "", /Docker/);
  assert.equal(advertiseProblem("10.0.0.1", false), undefined);
});
