/**
 * A node whose Raft snapshot file cannot be restored starts again by itself, with the real
 * executable, three nodes on loopback, `--mesh none`, snapshots every few entries
 * (MILL_SNAPSHOT_EVERY). A follower's snapshot damaged on disk (a flipped byte), and one planted
 * in another format with a valid checksum (the attacker's side: it passes the file's own checks
 * and must meet the state machine's), are each set aside with one log line naming the file, the
 * index and the reason; the node catches up from the leader, and every node then holds the same
 * state and sees every node ready. A bad file planted at a higher index beside a follower's own
 * snapshot is set aside too, but the follower opens from its own snapshot and keeps its log.
 * Every process started is killed at the end.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { closeSync, openSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { encode } from "cbor-x";
import { decodeSnapshotFile, encodeSnapshotFile } from "../../lib/raft/storage/records.ts";
import { processExists } from "../../lib/shared/process.ts";
import { eventually, FAST_HEALTH, LocalCluster } from "./harness.ts";
import { debugState, secretOf } from "./raw-client.ts";

const repo = new URL("../..", import.meta.url).pathname;
const SNAPSHOT = /^snapshot-(\d{16})\.snap$/;

describe("a snapshot file that cannot be restored, on loopback", () => {
  const cluster = new LocalCluster("dist", { ...FAST_HEALTH, MILL_SNAPSHOT_EVERY: "3" });
  let token: string;
  const raftDir = (node: number) => join(cluster.dataDir(node), "raft");
  const logOf = (node: number) => readFileSync(join(cluster.dataDir(node), "mill.log"), "utf8");
  const snapshotOf = (node: number) => readdirSync(raftDir(node)).find((n) => SNAPSHOT.test(n));

  before(async () => {
    token = await cluster.form(3);
  });
  after(() => cluster.cleanup());

  /** One committed entry per call: the first node drained, or undrained again. */
  let drained = false;
  async function commitOne(): Promise<void> {
    drained = !drained;
    const result = await cluster.on(1, [drained ? "drain" : "undrain", "node-1"]);
    assert.equal(result.status, 0, result.stderr);
  }

  async function follower(): Promise<number> {
    const { leader } = await cluster.status(1);
    return [2, 3].find((node) => `node-${node}` !== leader)!;
  }

  /** Kills `node` once it has a snapshot, and returns that snapshot's file name. */
  async function stopWithSnapshot(node: number): Promise<string> {
    const name = await eventually("a snapshot on the follower", async () => {
      const found = snapshotOf(node);
      if (!found) await commitOne();
      return found;
    });
    const pid = cluster.kill(node);
    await eventually(`node ${node} to exit`, async () => (processExists(pid) ? undefined : true));
    return snapshotOf(node) ?? name;
  }

  /** `mill agent` for `node` in the background, its output appended to its mill.log. */
  function startAgent(node: number): void {
    const log = openSync(join(cluster.dataDir(node), "mill.log"), "a", 0o600);
    const child = spawn(
      join(repo, "dist", "mill"),
      ["agent", "--data-dir", cluster.dataDir(node)],
      {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...cluster.env },
        stdio: ["ignore", log, log],
        detached: true,
      },
    );
    closeSync(log);
    child.unref();
  }

  /** Every node answers, sees all three ready, and holds the same state as the others. */
  async function converged(): Promise<void> {
    await eventually(
      "every node ready and equal state digests",
      async () => {
        const digests = new Set<string>();
        for (const node of [1, 2, 3]) {
          const status = await cluster.statusIfAnswering(node);
          if (!status || status.nodes.some((n) => n.status !== "ready")) return undefined;
          const state = await debugState(
            cluster.address(node),
            secretOf(token),
            cluster.address(200),
          );
          digests.add(`${state.applied}/${state.stateSha256}`);
        }
        return digests.size === 1 ? true : undefined;
      },
      30_000,
    );
  }

  /** Restarts `node` and checks the line it logs, the set-aside file, and the cluster after. */
  async function restartAndRecover(node: number, name: string, reason: RegExp): Promise<void> {
    const index = Number(SNAPSHOT.exec(name)![1]);
    const kept = readFileSync(join(raftDir(node), name));
    await commitOne(); // the cluster moves on while the node is down
    const logged = logOf(node).length;
    startAgent(node);
    const line = await eventually("the set-aside line", async () =>
      logOf(node)
        .slice(logged)
        .split("\n")
        .find((l) => l.includes("cannot be restored")),
    );
    const aside = join(raftDir(node), `${name}.set-aside`);
    assert.match(
      line,
      new RegExp(
        `the snapshot at index ${index} in its storage cannot be restored: ${reason.source}; set it aside as ${aside.replace(/[.]/g, "\\.")}, discarded its log and catches up from the leader, without voting until its log reaches index \\d+ of term \\d+$`,
      ),
    );
    assert.deepEqual(readFileSync(aside), kept, "the file is kept as it was");
    await commitOne();
    await converged();
  }

  test("a follower whose snapshot file is damaged sets it aside, catches up and is ready", async () => {
    const node = await follower();
    const name = await stopWithSnapshot(node);
    const path = join(raftDir(node), name);
    const bytes = readFileSync(path);
    bytes[bytes.length - 1]! ^= 0xff;
    writeFileSync(path, bytes);
    await restartAndRecover(node, name, /checksum mismatch in the last record/);
  });

  test("a planted snapshot with a valid checksum but another format is refused by the state machine's check", async () => {
    const node = await follower();
    const name = await stopWithSnapshot(node);
    const path = join(raftDir(node), name);
    const real = decodeSnapshotFile(readFileSync(path), path);
    writeFileSync(path, encodeSnapshotFile({ meta: real.meta, data: encode({ format: "other" }) }));
    await restartAndRecover(
      node,
      name,
      /cannot restore the cluster snapshot: cluster snapshot has format undefined, expected \d+/,
    );
  });

  test("a bad file planted beside a follower's own snapshot is set aside, and the follower keeps its log", async () => {
    const node = await follower();
    await stopWithSnapshot(node);
    // Its newest: a kill between a new snapshot and the old one's deletion leaves both.
    const own = Math.max(
      ...readdirSync(raftDir(node)).map((n) => Number(SNAPSHOT.exec(n)?.[1] ?? 0)),
    );
    const index = own + 1000;
    const path = join(raftDir(node), `snapshot-${String(index).padStart(16, "0")}.snap`);
    writeFileSync(path, "planted", { mode: 0o600 });
    await commitOne(); // the cluster moves on while the node is down
    const logged = logOf(node).length;
    startAgent(node);
    const line = await eventually("the set-aside line", async () =>
      logOf(node)
        .slice(logged)
        .split("\n")
        .find((l) => l.includes("cannot be restored")),
    );
    assert.match(
      line,
      new RegExp(
        `the snapshot at index ${index} in its storage cannot be restored: .+; set it aside as ${path.replace(/[.]/g, "\\.")}\\.set-aside and opens from the snapshot at index ${own} and the log after it$`,
      ),
    );
    assert.equal(readFileSync(`${path}.set-aside`, "utf8"), "planted", "kept as it was");
    await commitOne();
    await converged();
    assert.doesNotMatch(logOf(node).slice(logged), /discarded its log/);
  });
});
