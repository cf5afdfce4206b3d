/**
 * A node whose data-dir disk is (nearly) full is shown as not healthy, with the reason, by
 * `mill status` and `mill nodes` on every node; freeing the space makes it healthy again. Node 2's
 * data dir is a 64 MiB tmpfs this test mounts (and always unmounts); three loopback nodes keep a
 * quorum while node 2 is short of space. Then node 2's workloads dir is a tmpfs without a free
 * inode: a replica placed there cannot start, and ENOSPC reaches `mill run` and `mill ps` while no
 * process is left behind. Needs root to mount.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { eventually, LocalCluster } from "./harness.ts";

const skip = process.getuid?.() === 0 ? undefined : "needs root to mount a tmpfs";

interface Node {
  name: string;
  status: string;
  problem?: string;
}

describe("a full data-dir disk", { skip }, () => {
  const cluster = new LocalCluster();
  const small = cluster.dataDir(2);
  const filler = join(small, "filler");
  const mounts: string[] = [];

  const mill = (args: string[], node: number) =>
    cluster.run(args, { env: { MILL_DATA_DIR: cluster.dataDir(node) } });

  async function nodes(asked: number): Promise<Node[]> {
    const result = await mill(["status", "--json"], asked);
    assert.equal(result.status, 0, result.stderr);
    return (JSON.parse(result.stdout) as { nodes: Node[] }).nodes;
  }

  before(async () => {
    mkdirSync(small, { recursive: true, mode: 0o700 });
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", small]);
    mounts.push(small);
    const token = await cluster.init();
    for (const node of [2, 3]) {
      const joined = await cluster.join(node, token);
      if (joined.status !== 0) throw new Error(`join ${node} failed: ${joined.stderr}`);
    }
  });

  after(async () => {
    // Lazily, while node 2 still holds files there: the mount point must be free for cleanup.
    for (const mount of mounts) execFileSync("umount", ["--lazy", mount]);
    await cluster.cleanup();
  });

  test("healthy while there is room", async () => {
    const seen = await eventually("all three ready", async () => {
      const all = await nodes(1);
      return all.length === 3 && all.every((node) => node.status === "ready") ? all : undefined;
    });
    assert.ok(seen.every((node) => node.problem === undefined));
  });

  test("nearly full: not healthy, with the reason, seen from every node; healthy again once freed", async () => {
    const { bavail, bsize } = statfsSync(small);
    writeFileSync(filler, Buffer.alloc(bavail * bsize - 1024 * 1024));
    for (const asked of [1, 2, 3]) {
      // A heartbeat may sample the disk while the filler is still being written (the node turns
      // unhealthy past 95% used, before the last megabytes land), so wait for the settled figure.
      const node2 = await eventually(`node-2's filled disk seen from node ${asked}`, async () => {
        const found = (await nodes(asked)).find((node) => node.name === "node-2");
        return found?.problem !== undefined && / 1\.\d MiB free/.test(found.problem)
          ? found
          : undefined;
      });
      assert.match(node2.problem!, /^data-dir disk nearly full \(\d+% used, 1\.\d MiB free\)/);
    }
    const text = await mill(["status"], 3);
    assert.match(text.stdout, /^CLUSTER: 2 nodes healthy, 1 not healthy/);
    assert.match(text.stdout, /node-2: data-dir disk nearly full/);
    assert.match((await mill(["nodes"], 1)).stdout, /node-2\s+2\s+unhealthy/);
    rmSync(filler);
    await eventually("node-2 healthy again", async () => {
      const all = await nodes(1);
      return all.every((node) => node.problem === undefined) ? true : undefined;
    });
  });

  test("a replica whose work dir cannot be made: ENOSPC reaches mill run and ps, no process left", async () => {
    const work = `${cluster.dataDir(2)}-workloads`;
    mkdirSync(work, { recursive: true, mode: 0o711 });
    // One inode, the root's own: not one directory more fits.
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m,nr_inodes=1,mode=0711", "tmpfs", work]);
    mounts.push(work);
    const result = await mill(["run", "cramped", "--replicas", "3", "--", "sleep", "300"], 1);
    assert.equal(result.status, 1, result.stdout + result.stderr);
    assert.match(
      result.stderr,
      /allocation (\d+) on node-2 cannot start: ENOSPC: no space left on device/,
    );
    const id = Number(/allocation (\d+) on node-2/.exec(result.stderr)![1]);
    const ps = await mill(["ps", "--json"], 3);
    const row = (
      JSON.parse(ps.stdout) as { allocations: (Node & { id: number; reason?: string })[] }
    ).allocations.find((allocation) => allocation.id === id);
    assert.equal(row?.status, "failed");
    assert.match(row?.reason ?? "", /^ENOSPC: no space left on device, mkdir/);
    assert.equal(
      existsSync(join(cluster.dataDir(2), "allocs", String(id), "pid")),
      false,
      "no process",
    );
    assert.equal((await mill(["stop", "cramped"], 1)).status, 0);
  });
});
