/**
 * Workload status tells the truth, with the real executable on one loopback node: `mill run` of
 * a command that exits at once, or within its first seconds, exits 1 and names the exit code;
 * `mill ps` shows such a replica as failing, with its exit code and its next restart; a command
 * that keeps running is a success.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { LocalCluster } from "./harness.ts";

interface Row {
  name: string;
  status: string;
  exitCode?: number;
  restartAt?: number;
  restarts: number;
}

describe("workload truth", () => {
  const cluster = new LocalCluster();
  const mill = (args: string[]) =>
    cluster.run(args, { env: { MILL_DATA_DIR: cluster.dataDir(1) } });

  async function rows(name: string): Promise<{ now: number; rows: Row[] }> {
    const result = await mill(["ps", "--json"]);
    assert.equal(result.status, 0, result.stderr);
    const view = JSON.parse(result.stdout) as { now: number; allocations: Row[] };
    return { now: view.now, rows: view.allocations.filter((row) => row.name === name) };
  }

  before(async () => {
    await cluster.init();
  });

  after(async () => {
    for (const name of ["flaky", "late", "steady"]) await mill(["stop", name]);
    await cluster.cleanup();
  });

  test("a command that exits at once: mill run fails with its exit code, ps says failing", async () => {
    const result = await mill(["run", "flaky", "--", "sh", "-c", "exit 7"]);
    assert.equal(result.status, 1, result.stdout + result.stderr);
    assert.match(result.stderr, /flaky: allocation \d+ on node-1 exited with code 7/);
    assert.doesNotMatch(result.stdout + result.stderr, /1\/1 running/);
    const {
      now,
      rows: [row],
    } = await rows("flaky");
    assert.equal(row?.status, "failing");
    assert.equal(row?.exitCode, 7);
    assert.ok(
      row?.restartAt !== undefined && row.restartAt > now - 1_000,
      "its next restart is known",
    );
    const text = await mill(["ps"]);
    assert.match(text.stdout, /failing \(exit 7, (restart in \d+s|restarting)\)/);
  });

  test("a command that exits within its first seconds fails mill run too", async () => {
    const result = await mill(["run", "late", "--", "sh", "-c", "sleep 1; exit 3"]);
    assert.equal(result.status, 1, result.stdout + result.stderr);
    assert.match(result.stderr, /late: allocation \d+ on node-1 exited with code 3/);
  });

  test("a command that keeps running is a success", async () => {
    const result = await mill(["run", "steady", "--", "sleep", "300"]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout + result.stderr, /steady: 1\/1 running/);
    const {
      rows: [row],
    } = await rows("steady");
    assert.equal(row?.status, "running");
  });
});
