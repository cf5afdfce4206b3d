/**
 * Removing and leaving with the real mesh, four nodes in network namespaces: after `mill remove`
 * and after `mill leave`, no remaining node's WireGuard (wg show, over the UAPI) lists the
 * departed node's key, and the departed node's interface and wireguard-go are gone.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { processExists } from "../../../lib/shared/process.ts";
import { eventually } from "../../e2e/harness.ts";
import { FaultCluster } from "../faults/cluster.ts";
import { notRootReason } from "../harness.ts";

describe("removing and leaving with the WireGuard mesh", { skip: notRootReason }, () => {
  let cluster: FaultCluster;
  const iface = (name: string) => `mf${cluster.net.runId}${cluster.host(name).index}`;

  /** The public keys `name`'s WireGuard lists as peers. */
  async function peerKeys(name: string): Promise<string[]> {
    const dump = await cluster.host(name).run("wg", ["show", iface(name), "peers"]);
    return dump.trim().split("\n").filter(Boolean);
  }

  async function keyOf(name: string): Promise<string> {
    const listed = await cluster.mill("node-1", [
      "nodes",
      "--json",
      "--data-dir",
      cluster.dataDir("node-1"),
    ]);
    assert.equal(listed.code, 0, listed.stderr);
    const nodes = (JSON.parse(listed.stdout) as { nodes: { name: string; wgPublicKey: string }[] })
      .nodes;
    return nodes.find((node) => node.name === name)!.wgPublicKey;
  }

  /** The departed node's agent and wireguard-go have exited and its interface is gone. */
  async function tidiedUp(name: string, agentPid: number, wgPid: number): Promise<void> {
    await eventually(`${name}'s agent and wireguard-go to exit`, async () =>
      [agentPid, wgPid].some(processExists) ? undefined : true,
    );
    const link = await cluster.host(name).exec("ip", ["link", "show", iface(name)]);
    assert.notEqual(link.code, 0, `${name}'s interface ${iface(name)} is gone`);
  }

  before(async () => {
    cluster = await FaultCluster.create(4, {});
    await cluster.form(["node-1", "node-2", "node-3", "node-4"]);
  });

  after(async () => {
    await cluster?.cleanup(false);
  });

  test("after mill remove, the remaining nodes drop the peer and the node tidies itself up", async () => {
    const key = await keyOf("node-4");
    for (const name of ["node-1", "node-2", "node-3"]) {
      await eventually(`${name} to list node-4 as a peer`, async () =>
        (await peerKeys(name)).includes(key) ? true : undefined,
      );
    }
    const agentPid = cluster.pid("node-4");
    const wgPid = Number(readFileSync(join(cluster.dataDir("node-4"), "wireguard.pid"), "utf8"));
    const removed = await cluster.mill("node-1", [
      "remove",
      "node-4",
      "--data-dir",
      cluster.dataDir("node-1"),
    ]);
    assert.equal(removed.code, 0, removed.stderr);
    for (const name of ["node-1", "node-2", "node-3"]) {
      await eventually(`${name} to drop node-4's key`, async () =>
        (await peerKeys(name)).includes(key) ? undefined : true,
      );
    }
    await tidiedUp("node-4", agentPid, wgPid);
    const there = await cluster.mill("node-4", ["status", "--data-dir", cluster.dataDir("node-4")]);
    assert.equal(there.code, 1);
    assert.match(there.stderr, /was removed from the cluster/);
  });

  test("after mill leave, the remaining nodes drop the peer; the node's interface is gone", async () => {
    const key = await keyOf("node-3");
    const agentPid = cluster.pid("node-3");
    const wgPid = Number(readFileSync(join(cluster.dataDir("node-3"), "wireguard.pid"), "utf8"));
    const left = await cluster.mill(
      "node-3",
      ["leave", "--data-dir", cluster.dataDir("node-3")],
      60_000,
    );
    assert.equal(left.code, 0, left.stderr);
    for (const name of ["node-1", "node-2"]) {
      await eventually(`${name} to drop node-3's key`, async () =>
        (await peerKeys(name)).includes(key) ? undefined : true,
      );
    }
    await tidiedUp("node-3", agentPid, wgPid);
    const status = await cluster.status("node-2");
    assert.deepEqual(
      status.nodes.map((node) => [node.name, node.status]),
      [
        ["node-1", "ready"],
        ["node-2", "ready"],
      ],
    );
  });
});
