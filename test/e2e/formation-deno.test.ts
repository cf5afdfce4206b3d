/**
 * The basic formation once more with every node run by Deno from source (`deno run -A main.ts`),
 * then a token rotation, whose new certificate every Deno node must serve without a restart.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fingerprintOfPem } from "../../lib/identity/fingerprint.ts";
import { servedFingerprint } from "../../lib/identity/pinned-client.ts";
import { LocalCluster } from "./harness.ts";

describe("under Deno", () => {
  const cluster = new LocalCluster("deno");
  after(() => cluster.cleanup());

  test("init and two joins give three ready voters", async () => {
    const token = await cluster.init();
    for (const node of [2, 3]) {
      const result = await cluster.join(node, token, 1);
      assert.equal(result.status, 0, result.stderr);
    }
    const status = await cluster.status(3);
    assert.deepEqual(
      status.nodes.map((node) => [node.name, node.status, node.role]),
      [
        ["node-1", "ready", "voter"],
        ["node-2", "ready", "voter"],
        ["node-3", "ready", "voter"],
      ],
    );
  });

  test("mill token rotate: every node saved and serves the new identity", async () => {
    const rotated = await cluster.on(2, ["token", "rotate", "--json"]);
    assert.equal(rotated.status, 0, rotated.stderr);
    const { token } = JSON.parse(rotated.stdout) as { token: string };
    const pin = token.split(".")[1];
    // The rotation answers once every ready member shows the new certificate.
    for (const node of [1, 2, 3]) {
      assert.equal(await servedFingerprint(cluster.address(node), 4400, 5_000), pin);
      const status = await cluster.run([
        "status",
        "--address",
        `${cluster.address(node)}:4400`,
        "--token",
        token,
      ]);
      assert.equal(status.status, 0, status.stderr);
    }
    for (const node of [1, 2, 3]) {
      const dir = cluster.dataDir(node);
      assert.equal(fingerprintOfPem(readFileSync(join(dir, "tls.crt"), "utf8")), pin);
      assert.equal(readFileSync(join(dir, "token"), "utf8").trim(), token);
    }
  });
});
