/** The basic formation once more with every node run by Deno from source (`deno run -A main.ts`). */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { LocalCluster } from "./harness.ts";

test("under Deno, init and two joins give three ready voters", async () => {
  const cluster = new LocalCluster("deno");
  after(() => cluster.cleanup());
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
