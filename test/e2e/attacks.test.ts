/**
 * Attacks on the node-to-node channels of a running cluster (the real executable, three nodes on
 * loopback with `--mesh none`), each replaying a finding of issue 11: forged Raft frames with a
 * high term from a peer that is not a member, a member's connection speaking for another member,
 * a 64 MiB frame header, 2,000 idle connections, a rejoin under a member's name without its key.
 * After each attack, every one of these holds:
 * no node's term changed, every node has the same state digest, every node is still ready, no
 * node's memory grew by more than MEMORY_SLACK_MIB, and the attacked node logged the refusal with
 * the attacker's address (the API's refusal of a join is its answer, which is not logged).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import type { Socket } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createNodeIdentity, nodeKeyOf } from "../../lib/identity/node-key.ts";
import { createSecret, hashSecret } from "../../lib/identity/token.ts";
import type { ClusterIdentity } from "../../lib/identity/x509.ts";
import { publicKeyFromPrivate } from "../../lib/mesh/keys.ts";
import { heldOpen, untilAccepted } from "../shared/tcp-table.ts";
import { signJoin } from "../unit/cluster/fixtures.ts";
import { eventually, LocalCluster } from "./harness.ts";
import {
  closed,
  forged,
  framesOf,
  HEADER_64_MIB,
  RAFT_PORT,
  tcpTo,
  tlsTo,
} from "./raft-attacks.ts";
import { debugState, rawRequest, secretOf } from "./raw-client.ts";

const MEMORY_SLACK_MIB = 64;

describe("attacks on the node-to-node channels", () => {
  const cluster = new LocalCluster();
  let token = "";
  let leader = 0;
  let follower = 0;
  let terms: number[] = [];
  let rssBefore: number[] = [];
  const attacker = () => cluster.address(200);

  const rssMib = (node: number) => {
    const status = readFileSync(`/proc/${cluster.pid(node)}/status`, "utf8");
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) / 1024;
  };
  const logOf = (node: number) => readFileSync(join(cluster.dataDir(node), "mill.log"), "utf8");
  const nodeKey = (node: number): ClusterIdentity => ({
    certPem: readFileSync(join(cluster.dataDir(node), "node.crt"), "utf8"),
    keyPem: readFileSync(join(cluster.dataDir(node), "node.key"), "utf8"),
  });

  const to = (node: number) => ({ host: cluster.address(node), localAddress: attacker() });
  const tcpToNode = (node: number) => tcpTo(to(node));
  const tlsToNode = (node: number, as: ClusterIdentity) => tlsTo(to(node), as);

  /** Everything each test asserts after its attack, plus the log line it expects. */
  async function assertUnharmed(logged?: { node: number; line: RegExp }): Promise<void> {
    const secret = secretOf(token);
    const digests = new Set<string>();
    for (const node of [1, 2, 3]) {
      const status = await cluster.status(node);
      assert.equal(status.term, terms[node - 1], `node ${node}'s term`);
      for (const member of status.nodes)
        assert.equal(member.status, "ready", `${member.name} on node ${node}`);
      digests.add(
        (await debugState(cluster.address(node), secret, cluster.address(201))).stateSha256,
      );
      const grew = rssMib(node) - rssBefore[node - 1]!;
      assert.ok(grew < MEMORY_SLACK_MIB, `node ${node} grew by ${grew.toFixed(1)} MiB`);
    }
    assert.equal(digests.size, 1, "every node has the same state");
    if (logged) assert.match(logOf(logged.node), logged.line);
  }

  before(async () => {
    token = await cluster.form(3);
    const status = await cluster.status(1);
    leader = status.nodes.find((node) => node.name === status.leader)!.id;
    follower = [1, 2, 3].find((node) => node !== leader)!;
    // Let the cluster settle (the joins' commits applied everywhere) before taking the baseline.
    await eventually("equal digests", async () => {
      const digests = new Set<string>();
      for (const node of [1, 2, 3]) {
        digests.add(
          (await debugState(cluster.address(node), secretOf(token), cluster.address(201)))
            .stateSha256,
        );
      }
      return digests.size === 1 ? true : undefined;
    });
    terms = await Promise.all([1, 2, 3].map(async (node) => (await cluster.status(node)).term));
    rssBefore = [1, 2, 3].map(rssMib);
  });
  after(() => cluster.cleanup());

  const escaped = (text: string) => text.replace(/\./g, "\\.");

  test("forged snapshot, vote and append frames in clear TCP never reach Raft", async () => {
    const socket = await tcpToNode(follower);
    socket.write(framesOf(forged(leader, follower)));
    await closed(socket);
    await assertUnharmed({
      node: follower,
      line: new RegExp(`refusing a connection from ${escaped(attacker())}: TLS handshake failed`),
    });
  });

  test("the same frames over TLS with a key the cluster never registered are refused", async () => {
    const socket = await tlsToNode(follower, createNodeIdentity());
    socket.write(framesOf(forged(leader, follower)));
    await closed(socket);
    await assertUnharmed({
      node: follower,
      line: new RegExp(
        `refusing a connection from ${escaped(attacker())}:\\d+: its certificate is not the key of a current member`,
      ),
    });
  });

  test("a member's connection cannot carry frames from another member", async () => {
    const third = [1, 2, 3].find((node) => node !== leader && node !== follower)!;
    const socket = await tlsToNode(follower, nodeKey(third));
    socket.write(framesOf(forged(leader, follower)));
    await closed(socket);
    await assertUnharmed({
      node: follower,
      line: new RegExp(
        `closing the connection from node ${third} \\(${escaped(attacker())}:\\d+\\): dropped a snapshot message claiming to come from node ${leader}`,
      ),
    });
  });

  test("64 MiB frame headers allocate nothing, from strangers or from members", async () => {
    const sockets: Socket[] = [];
    for (let i = 0; i < 12; i++) {
      const stranger = await tcpToNode(follower);
      stranger.write(HEADER_64_MIB);
      sockets.push(stranger);
    }
    // Even the leader's own key may only send a large frame by sending its bytes.
    for (let i = 0; i < 12; i++) {
      const asLeader = await tlsToNode(follower, nodeKey(leader));
      asLeader.write(HEADER_64_MIB);
      sockets.push(asLeader);
    }
    const third = [1, 2, 3].find((node) => node !== leader && node !== follower)!;
    const asFollower = await tlsToNode(follower, nodeKey(third));
    asFollower.write(HEADER_64_MIB);
    await closed(asFollower);
    await assertUnharmed({
      node: follower,
      line: new RegExp(
        `closing the connection from node ${third} \\(${escaped(attacker())}:\\d+\\): frame of 67108864 bytes exceeds the limit of 4194304`,
      ),
    });
    for (const socket of sockets) socket.destroy();
  });

  test("2,000 idle connections: all but 16 are closed at once, the rest at the handshake timeout", {
    timeout: 60_000,
  }, async () => {
    const sockets: Socket[] = [];
    for (let batch = 0; batch < 20; batch++) {
      const opened = await Promise.all(
        Array.from({ length: 100 }, () => tcpToNode(follower).catch(() => undefined)),
      );
      for (const socket of opened) if (socket) sockets.push(socket);
    }
    const ours = new Set(sockets.map((socket) => socket.localPort));
    const toNode = {
      address: cluster.address(follower),
      port: RAFT_PORT,
      from: (remote: string, port: number) => remote === attacker() && ours.has(port),
    };
    await untilAccepted(toNode);
    // The node admits or refuses each connection in the callback that accepts it, on its one
    // thread: its answer to a later request proves that every one of those callbacks has run.
    await debugState(cluster.address(follower), secretOf(token), cluster.address(201));
    const held = heldOpen(toNode);
    assert.ok(held <= 16, `node ${follower} holds ${held} of our ${sockets.length} connections`);
    await eventually("the handshake timeout to close the rest", async () =>
      sockets.every((socket) => socket.destroyed) ? true : undefined,
    );
    await assertUnharmed({
      node: follower,
      line: new RegExp(
        `refusing a connection from ${escaped(attacker())}: ${escaped(attacker())} already has 16 connections that have not authenticated`,
      ),
    });
  });

  test("a rejoin under a member's name without that member's key changes nothing", async () => {
    const victim = follower;
    const victimCert = nodeKey(victim).certPem;
    const stolen = {
      name: `node-${victim}`,
      advertise: attacker(),
      apiPort: 4400,
      raftPort: 4401,
      wgPort: 4400,
      wgPublicKey: publicKeyFromPrivate(
        readFileSync(join(cluster.dataDir(victim), "wg.key"), "utf8").trim(),
      ),
      resources: { cores: 64, memoryBytes: 1024 ** 4 },
      memberSecretHash: hashSecret(createSecret()),
      mesh: "none",
    };
    const before = await debugState(cluster.address(leader), secretOf(token), attacker());
    const own = createNodeIdentity();
    const attempts: [string, Record<string, unknown>, number, string][] = [
      // The victim's public node key and certificate, signed with a key that is not the victim's.
      [
        "the victim's key, signed by another",
        {
          ...signJoin({ requestId: "attack-rejoin-0001", ...stolen }, own),
          nodeKey: nodeKeyOf(victimCert),
          nodeCert: victimCert,
        },
        403,
        "signature",
      ],
      // The attacker's own key under the victim's name.
      [
        "another key under the victim's name",
        signJoin({ requestId: "attack-rejoin-0002", ...stolen }, own),
        409,
        "nodeKey",
      ],
    ];
    for (const [what, body, status, field] of attempts) {
      const reply = await rawRequest({
        host: cluster.address(follower),
        method: "POST",
        path: "/v1/join",
        headers: { authorization: `Bearer ${secretOf(token)}`, "content-type": "application/json" },
        body: JSON.stringify(body),
        from: attacker(),
      });
      assert.equal(reply.status, status, `${what}: ${reply.text}`);
      assert.equal((JSON.parse(reply.text) as { field: string }).field, field, what);
    }
    assert.deepEqual(
      await debugState(cluster.address(leader), secretOf(token), attacker()),
      before,
    );
    await assertUnharmed();
  });
});
