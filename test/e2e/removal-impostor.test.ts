/**
 * The attacker's side of how a node learns it was removed (lib/node/removal.ts), on the real
 * executable: three nodes on loopback (`--mesh none`); nodes 1 and 2 are killed, so node 3's
 * heartbeats find no leader and it asks the members' public addresses whether it was removed.
 * Impostors now listen there, with TLS identities of their own, and answer "removed" every way a
 * server without a member's key can: unsigned, signed with a key no member holds (as node 1 and
 * as an unknown id), and a genuine answer of node 1 recorded earlier, replayed. Node 3 must ask
 * them (so the test can fail), never send a credential, and keep running; once the impostors are
 * gone and the members are back, it is ready again.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { RemovalAnswer } from "../../lib/api/wire.ts";
import { removalStatement } from "../../lib/cluster/validate.ts";
import { createNodeIdentity, signWithNodeKey } from "../../lib/identity/node-key.ts";
import { removedPath } from "../../lib/node/removal.ts";
import { processExists } from "../../lib/shared/process.ts";
import { serveHttps, type TestHttpsServer } from "../shared/https-server.ts";
import { eventually, exited, LocalCluster } from "./harness.ts";
import { rawRequest } from "./raw-client.ts";

describe("a removal check answered by impostors at the members' addresses", () => {
  const cluster = new LocalCluster();
  const impostors: TestHttpsServer[] = [];

  before(async () => {
    await cluster.form(3);
  });

  after(async () => {
    for (const impostor of impostors) await impostor.close();
    await cluster.cleanup();
  });

  test("unsigned, foreign-key and replayed answers are asked for and never believed", async () => {
    const config = JSON.parse(readFileSync(join(cluster.dataDir(3), "node.json"), "utf8")) as {
      nodeId: number;
      clusterId: string;
    };
    const self = config.nodeId;
    // Node 1's genuine, signed answer about node 3, for a nonce of the attacker's: the replay.
    const recorded = await rawRequest({
      host: cluster.address(1),
      method: "POST",
      path: `/v1/members/${self}/removal`,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ nonce: randomBytes(32).toString("base64url") }),
      from: cluster.address(200),
    });
    assert.equal(recorded.status, 200, recorded.text);
    const genuine = JSON.parse(recorded.text) as RemovalAnswer;
    assert.equal(genuine.removed, false);

    const key = createNodeIdentity();
    const signed = (nonce: string, signer: number): RemovalAnswer => ({
      id: self,
      removed: true,
      nonce,
      signer,
      signerCert: key.certPem,
      signature: signWithNodeKey(
        key.keyPem,
        removalStatement(config.clusterId, self, true, nonce, signer),
      ),
    });
    const lies: Record<string, (nonce: string) => unknown> = {
      unsigned: (nonce) => ({ ...signed(nonce, 1), signature: undefined }),
      "a key no member holds, as node 1": (nonce) => signed(nonce, 1),
      "a key no member holds, as node 9": (nonce) => signed(nonce, 9),
      "node 1's recorded answer, as removed": () => ({ ...genuine, removed: true }),
      "node 1's recorded answer, as removed, with this nonce": (nonce) => ({
        ...genuine,
        removed: true,
        nonce,
      }),
    };
    const told = new Map<string, number>();
    const kinds = Object.keys(lies);

    const nodePid = cluster.pid(3)!;
    for (const node of [1, 2]) await exited(`node ${node}`, cluster.kill(node));
    for (const node of [1, 2]) {
      const impostor = await serveHttps(
        createNodeIdentity(),
        async (request) => {
          const { nonce } = (await request.json()) as { nonce: string };
          const asked = [...told.values()].reduce((sum, count) => sum + count, 0);
          const kind = kinds[asked % kinds.length]!;
          told.set(kind, (told.get(kind) ?? 0) + 1);
          return Response.json(lies[kind]!(nonce));
        },
        { host: cluster.address(node), port: 4400 },
      );
      impostors.push(impostor);
    }

    await eventually("node 3 to hear every lie twice", async () => {
      if (!processExists(nodePid)) assert.fail(`node 3 stopped after hearing ${[...told]}`);
      return kinds.every((kind) => (told.get(kind) ?? 0) >= 2) ? true : undefined;
    });
    assert.ok(processExists(nodePid), "node 3 still runs");
    assert.equal(existsSync(removedPath(cluster.dataDir(3))), false, "node 3 holds no mark");
    const authorizations = impostors.flatMap((impostor) => impostor.authorizations);
    assert.deepEqual(
      authorizations.filter((header) => header !== undefined),
      [],
      "no request carried a credential",
    );

    for (const impostor of impostors.splice(0)) await impostor.close();
    cluster.agent(1);
    cluster.agent(2);
    await eventually("node 3 to be ready among three", async () => {
      const status = await cluster.statusIfAnswering(3);
      const ready = status?.nodes.filter((node) => node.status === "ready").length;
      return ready === 3 ? true : undefined;
    });
    assert.equal(cluster.pid(3), nodePid, "the same node 3 process serves");
  });
});
