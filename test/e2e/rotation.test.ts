/**
 * `mill token rotate` re-keys the cluster's public TLS identity (the real executable, nodes on
 * loopback with `--mesh none`), the user's side and the attacker's side by side.
 * User: every running node serves the new certificate within a few heartbeats, status and writes
 * with the new token work through every node, the local CLI keeps working, a node stopped during
 * the rotation catches up (token and identity) when it returns, a fresh join with the new token
 * works, and a restart keeps the new identity.
 * Attacker: holding the old token and a copy of the old identity's key (what a removed node keeps),
 * they cannot pass for the cluster to a client of the new token, and every old-token path is
 * refused: client routes, join, the internal token fetch. The cluster is unharmed afterwards.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer } from "node:https";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { connect } from "node:tls";
import { fingerprintOfDer, fingerprintOfPem } from "../../lib/identity/fingerprint.ts";
import type { ClusterIdentity } from "../../lib/identity/x509.ts";
import { runningPid } from "../../lib/node/daemon.ts";
import { eventually, killWorkloads, LocalCluster } from "./harness.ts";
import { debugState, rawRequest, secretOf } from "./raw-client.ts";

const pinOf = (token: string) => token.split(".")[1]!;

describe("mill token rotate re-keys the public TLS identity", () => {
  const cluster = new LocalCluster();
  let oldToken = "";
  let fresh = "";
  /** What node 3 kept from before the rotation, as a node removed later would. */
  let loot: ClusterIdentity;
  const attacker = () => cluster.address(200);

  const fileOf = (node: number, file: string) =>
    readFileSync(join(cluster.dataDir(node), file), "utf8");
  /** The fingerprint of the certificate `node`'s public port shows in a new handshake. */
  async function served(node: number): Promise<string> {
    const socket = connect({
      host: cluster.address(node),
      port: 4400,
      rejectUnauthorized: false,
    });
    try {
      await once(socket, "secureConnect");
      return fingerprintOfDer(socket.getPeerCertificate().raw);
    } finally {
      socket.destroy();
    }
  }
  /** Waits until `node` saved the new token and identity and serves it. */
  function switched(node: number) {
    return eventually(`node ${node} to save and serve the new identity`, async () => {
      const saved = fileOf(node, "token").trim();
      if (saved !== fresh) return undefined;
      assert.equal(
        fingerprintOfPem(fileOf(node, "tls.crt")),
        pinOf(fresh),
        `node ${node}'s tls.crt`,
      );
      return (await served(node)) === pinOf(fresh) ? true : undefined;
    });
  }
  /** `mill COMMAND --address NODE --token TOKEN ARGS...`, the flags before any `--`. */
  const withToken = (node: number, [command, ...rest]: string[], token = fresh) =>
    cluster.run([
      command!,
      "--address",
      `${cluster.address(node)}:4400`,
      "--token",
      token,
      ...rest,
    ]);

  before(async () => {
    oldToken = await cluster.form(3);
    loot = { certPem: fileOf(3, "tls.crt"), keyPem: fileOf(3, "tls.key") };
  });
  after(async () => {
    killWorkloads(cluster, [1, 2, 3, 4]);
    await cluster.cleanup();
  });

  test("every running node serves the new certificate, whose fingerprint the new token carries", async () => {
    cluster.kill(3);
    const rotated = await cluster.on(2, ["token", "rotate"]);
    assert.equal(rotated.status, 0, rotated.stderr);
    fresh = /Token: (mill_t_\S+)/.exec(rotated.stdout)?.[1] ?? "";
    assert.ok(fresh, rotated.stdout);
    assert.notEqual(pinOf(fresh), pinOf(oldToken), "the new token pins a new identity");
    assert.notEqual(secretOf(fresh), secretOf(oldToken));
    // The rotation answers once every ready member shows the new certificate.
    for (const node of [1, 2]) assert.equal(await served(node), pinOf(fresh), `node ${node}`);
    for (const node of [1, 2]) await switched(node);
  });

  test("status and writes with the new token work through every node; the local CLI too", async () => {
    for (const node of [1, 2]) {
      const status = await withToken(node, ["status"]);
      assert.equal(status.status, 0, status.stderr);
      // Node 3 is stopped: down once its heartbeats are overdue.
      assert.match(status.stdout, /^CLUSTER: (3 nodes, all healthy|2 nodes healthy, 1 down)/);
      const run = await withToken(node, ["run", `after-rotation-${node}`, "--", "sleep", "600"]);
      assert.equal(run.status, 0, `a write through node ${node}: ${run.stderr}`);
      const stop = await withToken(node, ["stop", `after-rotation-${node}`]);
      assert.equal(stop.status, 0, stop.stderr);
      const local = await cluster.on(node, ["status"]);
      assert.equal(local.status, 0, `local status on node ${node}: ${local.stderr}`);
    }
  });

  test("a node stopped during the rotation catches up, token and identity, when it returns", async () => {
    assert.equal(fileOf(3, "token").trim(), oldToken, "node 3 was down during the rotation");
    cluster.agent(3);
    await switched(3);
    const local = await cluster.on(3, ["status"]);
    assert.equal(local.status, 0, local.stderr);
    await eventually("node 3 ready again", async () => {
      const status = await cluster.statusIfAnswering(3);
      return status?.nodes.every((member) => member.status === "ready") ? true : undefined;
    });
  });

  test("a fresh join with the new token works, and the joiner serves the new identity", async () => {
    const joined = await cluster.join(4, fresh, 3);
    assert.equal(joined.status, 0, joined.stderr);
    assert.equal(fingerprintOfPem(fileOf(4, "tls.crt")), pinOf(fresh));
    assert.equal(await served(4), pinOf(fresh));
    const status = await withToken(4, ["status"]);
    assert.equal(status.status, 0, status.stderr);
    assert.match(status.stdout, /^CLUSTER: 4 nodes, all healthy/);
  });

  test("a restart keeps the new identity", async () => {
    const { leader } = await cluster.status(1);
    // A follower that fetched the new pair from a member (the leader saved its own staged one).
    const node = [1, 2].find((id) => `node-${id}` !== leader)!;
    cluster.kill(node);
    await eventually(`node ${node}'s process to end`, async () =>
      runningPid(cluster.dataDir(node)) === undefined ? true : undefined,
    );
    cluster.agent(node);
    await eventually(`node ${node} back and every node ready`, async () => {
      const status = await cluster.statusIfAnswering(node);
      return status?.nodes.every((member) => member.status === "ready") ? true : undefined;
    });
    assert.equal(await served(node), pinOf(fresh));
    assert.equal(fileOf(node, "token").trim(), fresh);
  });

  test("attacker: the old identity's key cannot pass for the cluster to a client of the new token", async () => {
    const requests: string[] = [];
    const impostor = createServer({ cert: loot.certPem, key: loot.keyPem }, (request, response) => {
      requests.push(String(request.headers.authorization));
      response.end("{}");
    });
    impostor.listen(4400, attacker());
    await once(impostor, "listening");
    try {
      const status = await withToken(200, ["status"]);
      assert.equal(status.status, 1);
      assert.match(status.stderr, /is not the cluster the token names/);
      assert.match(status.stderr, /mill token rotate/);
      // The impostor listens on the attacker's address, as node "200" of the cluster's /24.
      const joined = await cluster.join(5, fresh, 200);
      assert.equal(joined.status, 1);
      assert.match(joined.stderr, /possible man-in-the-middle/);
      assert.deepEqual(requests, [], "not one request reached the impostor");
    } finally {
      impostor.close();
    }
  });

  test("attacker: with the old token every route is refused, and the cluster is unharmed", async () => {
    const before = await Promise.all([1, 2, 3, 4].map((node) => cluster.status(node)));
    const secret = secretOf(oldToken);
    // A fresh source for each request, so that the failed-auth back-off (429) answers none.
    let sources = 210;
    const source = () => cluster.address(sources++);
    for (const node of [1, 2, 3, 4]) {
      const host = cluster.address(node);
      for (const [method, path] of [
        ["GET", "/v1/status"],
        ["GET", "/v1/nodes"],
        ["GET", "/v1/debug/state"],
        ["POST", "/v1/token/rotate"],
      ] as const) {
        for (const credential of [secret, oldToken]) {
          const reply = await rawRequest({
            host,
            method,
            path,
            headers: { authorization: `Bearer ${credential}` },
            from: source(),
          });
          assert.equal(reply.status, 401, `${method} ${path} on node ${node}: ${reply.text}`);
        }
      }
      const join = await rawRequest({
        host,
        method: "POST",
        path: "/v1/join",
        headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
        body: "{}",
        from: source(),
      });
      assert.equal(join.status, 401, `join on node ${node}: ${join.text}`);
      // The token fetch needs a member's secret and node key; the old token is neither, even
      // shown with the old identity's certificate as a client certificate.
      const fetch = await rawRequest({
        host,
        method: "POST",
        path: "/v1/internal/token",
        headers: {
          authorization: `Bearer ${secret}`,
          "x-mill-node": "1",
          "content-type": "application/json",
        },
        body: JSON.stringify({ tokenHash: "0".repeat(64) }),
        from: source(),
        clientIdentity: loot,
      });
      assert.equal(fetch.status, 401, `token fetch on node ${node}: ${fetch.text}`);
      assert.doesNotMatch(fetch.text, /mill_t_/);
    }
    const lateJoin = await cluster.join(5, oldToken);
    assert.equal(lateJoin.status, 1, "a join with the old token is refused");
    // Unharmed: no term changed, every node ready with the same state.
    const digests = new Set<string>();
    for (const node of [1, 2, 3, 4]) {
      const status = await cluster.status(node);
      assert.equal(status.term, before[node - 1]!.term, `node ${node}'s term`);
      for (const member of status.nodes) assert.equal(member.status, "ready", member.name);
      digests.add((await debugState(cluster.address(node), secretOf(fresh), source())).stateSha256);
    }
    assert.equal(digests.size, 1, "every node has the same state");
  });
});
