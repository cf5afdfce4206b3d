/**
 * The provider's API token through the real executable: from a file or MILL_PROVIDER_TOKEN, kept
 * in the init node's data dir (0600) and never written to the Raft log or a snapshot.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { eventually, FAST_HEALTH, LocalCluster } from "./harness.ts";

const PROVIDER_TOKEN = "dop_v1_0123456789abcdef0123456789abcdef";

/** Every file below `dir`, read as text. */
function everyFile(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => readFileSync(join(entry.parentPath, entry.name), "latin1"));
}

describe("the provider token", () => {
  const fromFile = new LocalCluster();
  const fromEnv = new LocalCluster("dist", { ...FAST_HEALTH, MILL_PROVIDER_TOKEN: PROVIDER_TOKEN });
  after(async () => {
    await fromFile.cleanup();
    await fromEnv.cleanup();
  });

  test("from --provider-token-file: kept 0600 in the data dir, never in the Raft log", async () => {
    const file = join(fromFile.root, "do.token");
    writeFileSync(file, `${PROVIDER_TOKEN}\n`, { mode: 0o600 });
    await fromFile.init(["--provider", "digitalocean", "--provider-token-file", file]);
    const kept = join(fromFile.dataDir(1), "provider.token");
    assert.equal(readFileSync(kept, "utf8"), PROVIDER_TOKEN);
    assert.equal(statSync(kept).mode & 0o777, 0o600);
    // The ClusterInit entry is in the log once the cluster answers with its state.
    await eventually("the cluster state", () => fromFile.statusIfAnswering(1));
    const raft = everyFile(join(fromFile.dataDir(1), "raft"));
    assert.ok(raft.length > 0);
    assert.ok(
      raft.every((text) => !text.includes(PROVIDER_TOKEN)),
      "not in the log or a snapshot",
    );
    const config = readFileSync(join(fromFile.dataDir(1), "node.json"), "utf8");
    assert.doesNotMatch(config, /dop_v1/);
  });

  test("from MILL_PROVIDER_TOKEN; two sources at once is a usage error", async () => {
    await fromEnv.init(["--provider", "digitalocean"]);
    assert.equal(readFileSync(join(fromEnv.dataDir(1), "provider.token"), "utf8"), PROVIDER_TOKEN);
    const twice = await fromEnv.run([
      "init",
      "--provider",
      "digitalocean",
      "--provider-token",
      "x",
      "--data-dir",
      join(fromEnv.root, "other"),
    ]);
    assert.equal(twice.status, 2);
    assert.match(twice.stderr, /one way only, not MILL_PROVIDER_TOKEN and --provider-token/);
  });
});
