/**
 * `mill logs` with the real executable, two loopback nodes: asked on node 1, it shows the output
 * of the replica node 2 runs as well as its own, `--tail` keeps the last lines, and `--follow`
 * prints lines written after it started.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { LocalCluster } from "./harness.ts";

describe("mill logs", () => {
  const cluster = new LocalCluster();
  const env = { ...cluster.env, MILL_DATA_DIR: cluster.dataDir(1), PATH: process.env.PATH ?? "" };
  const mill = (args: string[]) => cluster.run(args, { env });
  /** Each replica says where it runs, then counts up. */
  const script =
    'echo "hello from $MILL_ALLOCATION_ID"; i=0; while :; do i=$((i+1)); echo "tick $i"; sleep 0.2; done';

  before(async () => {
    const token = await cluster.init();
    const joined = await cluster.join(2, token);
    if (joined.status !== 0) throw new Error(`join failed: ${joined.stderr}`);
    const run = await mill(["run", "talk", "--replicas", "2", "--", "sh", "-c", script]);
    if (run.status !== 0) throw new Error(`run failed: ${run.stderr}`);
  });

  after(async () => {
    await mill(["stop", "talk"]);
    await cluster.cleanup();
  });

  test("shows every replica's output, the other node's too, each line labelled", async () => {
    const result = await mill(["logs", "talk"]);
    assert.equal(result.status, 0, result.stderr);
    const labels = new Set(
      [...result.stdout.matchAll(/^\[(\d+) (node-\d)\] hello from (\d+)$/gm)].map((m) => {
        assert.equal(m[1], m[3], "the label names the allocation that printed");
        return m[2];
      }),
    );
    assert.deepEqual([...labels].sort(), ["node-1", "node-2"]);
  });

  test("--tail keeps the last lines of each replica", async () => {
    const result = await mill(["logs", "talk", "--tail", "1"]);
    assert.equal(result.status, 0, result.stderr);
    const lines = result.stdout.trim().split("\n");
    assert.equal(lines.length, 2, result.stdout);
    assert.ok(
      lines.every((line) => /^\[\d+ node-\d\] tick \d+$/.test(line)),
      result.stdout,
    );
    const bad = await mill(["logs", "talk", "--tail", "0"]);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--tail "0" is not a line count/);
    const unknown = await mill(["logs", "nobody"]);
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /no workload named nobody/);
  });

  test("--follow prints what is written after it started", async () => {
    const start = await mill(["logs", "talk", "--tail", "1"]);
    const highest = Math.max(...[...start.stdout.matchAll(/tick (\d+)/g)].map((m) => Number(m[1])));
    const follower = spawn(cluster.binary, ["logs", "talk", "--follow", "--tail", "1"], { env });
    try {
      const later = await new Promise<number>((resolve, reject) => {
        let seen = "";
        follower.stdout.on("data", (chunk) => {
          seen += chunk;
          const ticks = [...seen.matchAll(/tick (\d+)\n/g)].map((m) => Number(m[1]));
          const newer = ticks.find((tick) => tick > highest + 5);
          if (newer !== undefined) resolve(newer);
        });
        follower.once("exit", (code) => reject(new Error(`logs --follow exited ${code}: ${seen}`)));
      });
      assert.ok(later > highest + 5);
    } finally {
      follower.kill("SIGKILL");
    }
  });
});
