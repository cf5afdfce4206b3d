/**
 * Benchmark: the node lifecycle with the real executable (`dist/mill`).
 * - `mill drain` of a node holding 10 replicas: a fresh three-node loopback cluster per round
 *   (`--mesh none`, the harness's short health timings, a 100 ms reconcile tick) runs 30
 *   replicas (10 per node); timed from the command's start until it returns (every replica moved,
 *   each replacement running before its original stopped).
 * - `mill remove` with the WireGuard mesh (root only): four nodes in network namespaces; timed
 *   from the command's start until the last remaining node's WireGuard no longer lists the
 *   removed node's key (`wg show` over the UAPI, polled every 10 ms), and until the command
 *   returned. Between rounds the removed node's host joins again under the same name.
 * - `mill recover` with a 100k-entry log: a three-node loopback cluster loses two nodes (kill -9),
 *   the survivor is stopped and 100,000 committed entries (no-op token commands) are appended to
 *   its log offline; timed: the `mill recover` command, and from its start until the restarted
 *   one-node cluster accepted a write (`mill token rotate`).
 * Usage: npm run build && node --import tsx test/bench/lifecycle.ts. Env: BENCH_ROUNDS (3).
 * Owns: the clusters it starts; every process is ended at the end.
 */
import { rmSync } from "node:fs";
import { encodeCommand } from "../../lib/cluster/commands.ts";
import { ClusterFsm } from "../../lib/cluster/fsm.ts";
import { raftDir } from "../../lib/node/config.ts";
import { replayCommitted } from "../../lib/raft/recover.ts";
import { openStorage } from "../../lib/raft/storage/storage.ts";
import type { Entry } from "../../lib/raft/types.ts";
import { pollUntil } from "../../lib/shared/poll.ts";
import { exited, killWorkloads, LocalCluster } from "../e2e/harness.ts";
import { FaultCluster } from "../netns/faults/cluster.ts";
import { notRootReason } from "../netns/harness.ts";
import { benchRounds, commitOf, loadAverage, printTable, type Row } from "./formation.ts";

const ROUNDS = benchRounds(3);
const repo = new URL("../..", import.meta.url).pathname;

async function drainRound(): Promise<number> {
  const cluster = new LocalCluster();
  try {
    await cluster.form(3);
    const run = await cluster.on(1, [
      "run",
      "web",
      "--replicas",
      "30",
      "--cpu",
      "0.05",
      "--memory",
      "16M",
      "--",
      "sleep",
      "1000",
    ]);
    if (run.status !== 0) throw new Error(`run failed: ${run.stderr}`);
    const onThree = (await cluster.ps(1)).filter(
      (row) => row.node === "node-3" && row.status === "running",
    );
    if (onThree.length !== 10) throw new Error(`node-3 runs ${onThree.length} replicas, not 10`);
    const started = performance.now();
    const drained = await cluster.on(2, ["drain", "node-3"]);
    const took = performance.now() - started;
    if (drained.status !== 0) throw new Error(`drain failed: ${drained.stderr}`);
    return took;
  } finally {
    killWorkloads(cluster, [1, 2, 3]);
    await cluster.cleanup();
  }
}

async function peerKeys(cluster: FaultCluster, name: string): Promise<string[]> {
  const iface = `mf${cluster.net.runId}${cluster.host(name).index}`;
  const listed = await cluster.host(name).run("wg", ["show", iface, "peers"]);
  return listed.trim().split("\n").filter(Boolean);
}

async function keyOf(cluster: FaultCluster, name: string): Promise<string> {
  const listed = await cluster.mill("node-1", [
    "nodes",
    "--json",
    "--data-dir",
    cluster.dataDir("node-1"),
  ]);
  const nodes = (JSON.parse(listed.stdout) as { nodes: { name: string; wgPublicKey: string }[] })
    .nodes;
  const node = nodes.find((entry) => entry.name === name);
  if (!node) throw new Error(`${name} is not listed`);
  return node.wgPublicKey;
}

async function removeRounds(): Promise<{ dropped: number[]; returned: number[] }> {
  const cluster = await FaultCluster.create(4, {});
  const dropped: number[] = [];
  const returned: number[] = [];
  try {
    await cluster.init("node-1");
    for (const name of ["node-2", "node-3", "node-4"]) {
      const joined = await cluster.joinOnce(name, "node-1", 60_000);
      if (joined.code !== 0) throw new Error(`join ${name} failed: ${joined.stderr}`);
    }
    for (let round = 0; round < ROUNDS; round++) {
      const key = await keyOf(cluster, "node-4");
      const agent = cluster.pid("node-4");
      const started = performance.now();
      const removal = cluster
        .mill("node-1", ["remove", "node-4", "--data-dir", cluster.dataDir("node-1")])
        .then((result) => {
          if (result.code !== 0) throw new Error(`remove failed: ${result.stderr}`);
          returned.push(performance.now() - started);
        });
      const listsIt = (name: string) => peerKeys(cluster, name).then((keys) => keys.includes(key));
      await pollUntil(
        async () => !(await Promise.all(["node-1", "node-2", "node-3"].map(listsIt))).some(Boolean),
        60_000,
        () => new Error("a remaining node still lists node-4's WireGuard key after 60 s"),
        10,
      );
      dropped.push(performance.now() - started);
      await removal;
      // The removed node stops itself; then its host joins again from a fresh data dir.
      await exited("the removed node", agent);
      rmSync(cluster.dataDir("node-4"), { recursive: true, force: true });
      const rejoined = await cluster.joinOnce("node-4", "node-1", 60_000);
      if (rejoined.code !== 0) throw new Error(`rejoin failed: ${rejoined.stderr}`);
    }
    return { dropped, returned };
  } finally {
    await cluster.cleanup(false);
  }
}

const LOG_ENTRIES = 100_000;

/** Appends LOG_ENTRIES committed no-op commands to a stopped node's Raft log. */
async function growLog(dataDir: string): Promise<void> {
  const storage = await openStorage(raftDir(dataDir));
  try {
    const restored = storage.restore();
    const fsm = new ClusterFsm();
    replayCommitted(restored, fsm);
    const noop = encodeCommand({ type: "TokenRotate", tokenHash: fsm.state.tokenHash });
    const last = restored.entries.at(-1)!;
    const term = Math.max(last.term, restored.hardState.term);
    for (let from = last.index + 1; from <= last.index + LOG_ENTRIES; from += 10_000) {
      const entries: Entry[] = [];
      for (let index = from; index < from + 10_000; index++) {
        entries.push({ index, term, kind: "command", data: noop });
      }
      const commit = entries.at(-1)!.index;
      await storage.save({ entries, hardState: { ...restored.hardState, term, commit } });
    }
  } finally {
    await storage.close();
  }
}

async function recoverRound(): Promise<{ recover: number; write: number }> {
  const cluster = new LocalCluster();
  try {
    await cluster.form(3);
    for (const node of [2, 3]) cluster.kill(node);
    const survivor = cluster.kill(1, "SIGTERM");
    await exited("the survivor", survivor);
    await growLog(cluster.dataDir(1));
    const started = performance.now();
    const recovered = await cluster.run(["recover", "--data-dir", cluster.dataDir(1)]);
    const recover = performance.now() - started;
    if (recovered.status !== 0) throw new Error(`recover failed: ${recovered.stderr}`);
    cluster.agent(1);
    await pollUntil(
      async () => (await cluster.on(1, ["token", "rotate"])).status === 0,
      60_000,
      () => new Error("the recovered node took no write within 60 s"),
      50,
    );
    return { recover, write: performance.now() - started };
  } finally {
    await cluster.cleanup();
  }
}

const before = loadAverage();
const rows: Row[] = [];
const drains: number[] = [];
for (let round = 0; round < ROUNDS; round++) drains.push(await drainRound());
rows.push(["`mill drain` of a node with 10 replicas (loopback, 30 replicas in all)", drains]);
const recovers: number[] = [];
const writes: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  const { recover, write } = await recoverRound();
  recovers.push(recover);
  writes.push(write);
}
rows.push([`\`mill recover\` with a ${LOG_ENTRIES / 1000}k-entry log`, recovers]);
rows.push(["`mill recover` → the one-node cluster accepted a write", writes]);
if (notRootReason === false) {
  const { dropped, returned } = await removeRounds();
  rows.push(["`mill remove` → last remaining node dropped the WireGuard peer", dropped]);
  rows.push(["`mill remove` → the command returned", returned]);
} else {
  console.log(`mill remove with the mesh skipped: ${notRootReason}`);
}
console.log(
  `lifecycle bench at ${commitOf(repo)}, ${ROUNDS} rounds; load before ${before}, after ${loadAverage()}`,
);
printTable(rows);
