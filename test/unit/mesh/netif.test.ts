import assert from "node:assert/strict";
import { describe, it, test } from "node:test";
import {
  checkInterfaceSettings,
  interfaceCommands,
  offloadsFromTunFlags,
} from "../../../lib/mesh/netif.ts";

describe("netif", () => {
  const settings = { iface: "mill0", address: "10.99.0.7/16", helper: "/opt/mill/mill-netif" };

  it("uses the helper when it is usable", () => {
    assert.deepEqual(interfaceCommands(settings, true), [
      ["/opt/mill/mill-netif", ["mill0", "10.99.0.7/16", "1420"]],
    ]);
  });

  it("falls back to iproute2", () => {
    assert.deepEqual(interfaceCommands({ ...settings, mtu: 1380 }, false), [
      ["ip", ["address", "replace", "10.99.0.7/16", "dev", "mill0"]],
      ["ip", ["link", "set", "dev", "mill0", "mtu", "1380", "up"]],
    ]);
  });

  it("validates before running anything", () => {
    checkInterfaceSettings(settings);
    assert.throws(
      () => checkInterfaceSettings({ ...settings, iface: "a-name-far-too-long" }),
      /invalid interface name/,
    );
    assert.throws(
      () => checkInterfaceSettings({ ...settings, iface: "mill0;rm" }),
      /invalid interface name/,
    );
    assert.throws(
      () => checkInterfaceSettings({ ...settings, address: "10.99.0.7" }),
      /IPv4\/prefix/,
    );
    assert.throws(
      () => checkInterfaceSettings({ ...settings, address: "10.99.0.7/33" }),
      /IPv4\/prefix/,
    );
    assert.throws(
      () => checkInterfaceSettings({ ...settings, address: "10.99.0.7/16/2" }),
      /IPv4\/prefix/,
    );
    assert.throws(() => checkInterfaceSettings({ ...settings, mtu: 40 }), /invalid MTU 40/);
  });
});

test("a TUN's sysfs flags tell whether wireguard-go turned its offloads on", () => {
  // IFF_TUN | IFF_NO_PI | IFF_VNET_HDR, as Debian 13's wireguard-go opens it; without the header, as Debian 12's.
  assert.equal(offloadsFromTunFlags("0x5001\n"), true);
  assert.equal(offloadsFromTunFlags("0x1001\n"), false);
  assert.equal(offloadsFromTunFlags(""), undefined);
  assert.equal(offloadsFromTunFlags("5001"), undefined);
});
