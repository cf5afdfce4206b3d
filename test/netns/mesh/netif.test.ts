import assert from "node:assert/strict";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { buildNetifHelper } from "../../../lib/mesh/netif-build.ts";
import { createHosts, type Host, type Hosts, notRootReason } from "../harness.ts";

const NETIF = fileURLToPath(new URL("../../../lib/mesh/netif.ts", import.meta.url));

describe("interface addressing inside a namespace", { skip: notRootReason }, () => {
  let hosts: Hosts;
  let host: Host;
  let dir: string;
  let helper: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "mill-netif-"));
    helper = join(dir, "mill-netif");
    await buildNetifHelper(helper);
    hosts = await createHosts(1);
    host = hosts.hosts[0]!;
    // veth pairs, since the dummy module may be absent; the far ends are up so the near ends get carrier.
    for (const iface of ["d0", "d1"]) {
      await host.run("ip", ["link", "add", iface, "type", "veth", "peer", "name", `${iface}peer`]);
      await host.run("ip", ["link", "set", `${iface}peer`, "up"]);
    }
  });

  after(async () => {
    await hosts?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  const linkState = async (iface: string) => {
    const link = await host.run("ip", ["-o", "link", "show", "dev", iface]);
    const address = await host.run("ip", ["-4", "-o", "address", "show", "dev", iface]);
    const route = await host.run("ip", ["-4", "route", "show", "dev", iface]);
    return {
      up: /[<,]UP[,>]/.test(link),
      mtu: Number(/ mtu (\d+)/.exec(link)?.[1]),
      addresses: [...address.matchAll(/inet (\S+)/g)].map((match) => match[1]),
      routes: route.trim(),
    };
  };

  it("builds a small static helper", async () => {
    const size = (await stat(helper)).size;
    assert.ok(size > 0 && size < 200_000, `mill-netif is ${size} bytes`);
  });

  it("sets address, netmask, MTU and link up, and repeating it is harmless", async () => {
    await host.run(helper, ["d0", "10.99.0.5/16", "1420"]);
    await host.run(helper, ["d0", "10.99.0.5/16", "1420"]);
    assert.deepEqual(await linkState("d0"), {
      up: true,
      mtu: 1420,
      addresses: ["10.99.0.5/16"],
      routes: "10.99.0.0/16 proto kernel scope link src 10.99.0.5",
    });
    await host.run(helper, ["d0", "10.99.0.6/24", "1400"]);
    const changed = await linkState("d0");
    assert.deepEqual([changed.addresses, changed.mtu], [["10.99.0.6/24"], 1400]);
  });

  it("fails with one clear line and a distinct exit code", async () => {
    const missing = await host.exec(helper, ["nope0", "10.99.0.5/16", "1420"]);
    assert.equal(missing.code, 1);
    assert.equal(
      missing.stderr,
      "mill-netif: SIOCSIFADDR on nope0 failed: No such device (no such interface in this network namespace)\n",
    );
    const usage = await host.exec(helper, ["d0", "10.99.0.5", "1420"]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /^mill-netif: ADDR\/PREFIX needs a \/PREFIX\n/);
    assert.equal((await host.exec(helper, ["d0", "10.99.0.5/16", "9"])).code, 2);
  });

  it("falls back to iproute2 without the helper", async () => {
    const script = `import(${JSON.stringify(NETIF)}).then((m) => m.configureInterface({ iface: "d1", address: "10.98.0.9/24", mtu: 1380, helper: "/nonexistent/mill-netif" }))`;
    await host.run(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script]);
    await host.run(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script]);
    assert.deepEqual(await linkState("d1"), {
      up: true,
      mtu: 1380,
      addresses: ["10.98.0.9/24"],
      routes: "10.98.0.0/24 proto kernel scope link src 10.98.0.9",
    });
  });
});
