/**
 * Removing and leaving with the real mesh, five nodes in network namespaces: after `mill remove`
 * and after `mill leave`, no remaining node's WireGuard (wg show, over the UAPI) lists the
 * departed node's key, the departed node's interface and wireguard-go are gone, and its member
 * credentials (member secret and node key), which a remaining member took before, are refused
 * there. A node removed while it was paused, with the token rotated before it resumes, still
 * learns it.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { REMOVED_EXIT_STATUS, removedPath } from "../../../lib/node/removal.ts";
import { deadline } from "../../../lib/shared/deadline.ts";
import { processExists } from "../../../lib/shared/process.ts";
import { formatProtocol, PROTOCOL_HEADER, PROTOCOL_VERSION } from "../../../lib/shared/protocol.ts";
import { eventually, exited } from "../../e2e/harness.ts";
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

  /**
   * `name`'s member credentials, copied while it is a member (leave clears its data dir): the
   * heartbeat status a call with them gets from `to`'s internal API, at its mesh address, sent
   * from `from`'s namespace (a member's, so the call comes through the mesh).
   */
  async function memberCredentials(name: string) {
    const dir = mkdtempSync(join(tmpdir(), "mill-departed-"));
    const own = (file: string) => readFileSync(join(cluster.dataDir(name), file), "utf8");
    writeFileSync(join(dir, "node.crt"), own("node.crt"), { mode: 0o600 });
    writeFileSync(join(dir, "node.key"), own("node.key"), { mode: 0o600 });
    const secret = own("member.secret").trim();
    const status = await cluster.status("node-1");
    const id = status.nodes.find((node) => node.name === name)!.id;
    const meshOf = (node: string) => status.nodes.find((n) => n.name === node)!.meshAddress;
    return {
      heartbeat: (from: string, to: string) =>
        cluster
          .host(from)
          .run("curl", [
            ...["-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"],
            ...["--cert", join(dir, "node.crt"), "--key", join(dir, "node.key")],
            ...["-H", `x-mill-node: ${id}`, "-H", `authorization: Bearer ${secret}`],
            ...["-H", `${PROTOCOL_HEADER}: ${formatProtocol(PROTOCOL_VERSION)}`],
            ...["-H", "content-type: application/json", "--data", "{}"],
            `https://${meshOf(to)}:4400/v1/internal/heartbeat`,
          ]),
      remove: () => rmSync(dir, { recursive: true, force: true }),
    };
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
    cluster = await FaultCluster.create(5, {});
    await cluster.form(["node-1", "node-2", "node-3", "node-4", "node-5"]);
  });

  after(async () => {
    await cluster?.cleanup(false);
  });

  test("a node removed while paused, the token rotated before it resumes: it notices, exits 3, tidies up", async (t) => {
    // The agent runs as this test's child, so its exit status can be read.
    const detached = cluster.pid("node-5");
    process.kill(detached, "SIGTERM");
    await exited("node-5's detached agent", detached);
    const agent = cluster.restart("node-5");
    const exit = new Promise<number | null>((resolve) => agent.once("exit", resolve));
    await eventually("node-5 to be ready again", async () => {
      const status = await cluster.statusIfAnswering("node-1");
      return status?.nodes.find((node) => node.name === "node-5")?.status === "ready"
        ? true
        : undefined;
    });
    const agentPid = cluster.pid("node-5");
    const wgPid = Number(readFileSync(join(cluster.dataDir("node-5"), "wireguard.pid"), "utf8"));
    const key = await keyOf("node-5");
    const oldToken = cluster.token("node-5");

    cluster.pause("node-5");
    await eventually("node-1 to see node-5 down", async () => {
      const status = await cluster.statusIfAnswering("node-1");
      return status?.nodes.find((node) => node.name === "node-5")?.status === "down"
        ? true
        : undefined;
    });
    const dataDir = ["--data-dir", cluster.dataDir("node-1")];
    const removed = await cluster.mill("node-1", ["remove", "node-5", "--force", ...dataDir]);
    assert.equal(removed.code, 0, removed.stderr);
    const rotated = await cluster.mill("node-1", ["token", "rotate", ...dataDir]);
    assert.equal(rotated.code, 0, rotated.stderr);
    assert.notEqual(cluster.token("node-1"), oldToken, "the token was rotated");
    for (const name of ["node-1", "node-2", "node-3", "node-4"]) {
      await eventually(`${name} to drop node-5's key`, async () =>
        (await peerKeys(name)).includes(key) ? undefined : true,
      );
    }

    const resumedAt = Date.now();
    cluster.resume("node-5");
    // A few heartbeat intervals (200 ms here) suffice; the bound only keeps a failure from hanging.
    const status = await deadline(exit, 20_000);
    assert.equal(status, REMOVED_EXIT_STATUS, "the agent exits with the removed status");
    const noticedMs = Date.now() - resumedAt;
    const mark = JSON.parse(readFileSync(removedPath(cluster.dataDir("node-5")), "utf8"));
    assert.equal(mark.how, "a member's signed answer says its id was removed");
    assert.equal(cluster.token("node-5"), oldToken, "node-5 never got the new token");
    await tidiedUp("node-5", agentPid, wgPid);
    const there = await cluster.mill("node-5", ["status", "--data-dir", cluster.dataDir("node-5")]);
    assert.equal(there.code, 1);
    assert.match(there.stderr, /this node \(node-5, id \d+\) was removed from the cluster/);
    t.diagnostic(`node-5 stopped ${noticedMs} ms after it resumed`);
  });

  test("after mill remove, the remaining nodes drop the peer, refuse its credentials, and the node tidies itself up", async (t) => {
    const key = await keyOf("node-4");
    for (const name of ["node-1", "node-2", "node-3"]) {
      await eventually(`${name} to list node-4 as a peer`, async () =>
        (await peerKeys(name)).includes(key) ? true : undefined,
      );
    }
    const agentPid = cluster.pid("node-4");
    const wgPid = Number(readFileSync(join(cluster.dataDir("node-4"), "wireguard.pid"), "utf8"));
    const credentials = await memberCredentials("node-4");
    t.after(credentials.remove);
    // Taken as a member's: the leader answers 200, a follower 421 naming the leader.
    assert.match(await credentials.heartbeat("node-2", "node-1"), /^(200|421)$/);
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
    for (const name of ["node-1", "node-2", "node-3"]) {
      assert.equal(await credentials.heartbeat("node-2", name), "403", `refused by ${name}`);
    }
    const there = await cluster.mill("node-4", ["status", "--data-dir", cluster.dataDir("node-4")]);
    assert.equal(there.code, 1);
    assert.match(there.stderr, /was removed from the cluster/);
  });

  test("after mill leave, the remaining nodes drop the peer and refuse its credentials; the node's interface is gone", async (t) => {
    const key = await keyOf("node-3");
    const agentPid = cluster.pid("node-3");
    const wgPid = Number(readFileSync(join(cluster.dataDir("node-3"), "wireguard.pid"), "utf8"));
    const credentials = await memberCredentials("node-3");
    t.after(credentials.remove);
    // Taken as a member's: the leader answers 200, a follower 421 naming the leader.
    assert.match(await credentials.heartbeat("node-2", "node-1"), /^(200|421)$/);
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
    for (const name of ["node-1", "node-2"]) {
      assert.equal(await credentials.heartbeat("node-2", name), "403", `refused by ${name}`);
    }
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
