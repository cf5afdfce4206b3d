/**
 * The attacker's side of running workloads, with the real executable on one loopback node: a
 * workload that tries to read the node's token, keys and Raft log gets nothing, and a `setsid`
 * child (a session of its own) does not outlive `mill stop`. The user's side (a workload runs,
 * with its own working directory) is checked on the way. Needs root, like the node itself.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { workRoot } from "../../lib/workloads/allocation-dirs.ts";
import { eventually, LocalCluster } from "./harness.ts";

const skip = process.getuid?.() === 0 ? undefined : "needs root to switch users";

describe("workloads cannot reach the node", { skip }, () => {
  const cluster = new LocalCluster();
  const dataDir = cluster.dataDir(1);
  const mill = (args: string[]) => cluster.run(args, { env: { MILL_DATA_DIR: dataDir } });
  /** Every process a workload reported, killed at the end whatever happened. */
  const reported = new Set<number>();

  /** The newest allocation of the data dir whose output holds `text`; its output. */
  function output(text: string): string | undefined {
    const allocs = join(dataDir, "allocs");
    if (!existsSync(allocs)) return undefined;
    for (const id of readdirSync(allocs)) {
      const log = join(allocs, id, "output.log");
      const content = existsSync(log) ? readFileSync(log, "utf8") : "";
      if (content.includes(text)) return content;
    }
    return undefined;
  }

  function alive(pid: number): boolean {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(")") + 2));
    } catch {
      return false;
    }
  }

  before(async () => {
    await cluster.init();
  });

  after(async () => {
    for (const pid of reported) if (alive(pid)) process.kill(pid, "SIGKILL");
    await cluster.cleanup();
  });

  test("a workload reads neither the token, the keys, nor the Raft log", async () => {
    const secret = readFileSync(join(dataDir, "token"), "utf8").trim();
    const keys = readdirSync(dataDir).filter((name) => /\.(key|secret)$/.test(name));
    assert.ok(keys.length > 0, "the data dir holds keys to steal");
    const thief = [
      "id -u",
      "pwd",
      `cat ${dataDir}/token`,
      ...keys.map((name) => `cat ${dataDir}/${name}`),
      `ls ${dataDir}/raft`,
      `cat ${dataDir}/raft/*`,
      "echo pid $$",
      "echo thief-done",
    ].join("; ");
    const result = await mill(["run", "thief", "--", "sh", "-c", `${thief}; sleep 300`]);
    assert.equal(result.status, 0, result.stderr);
    const log = await eventually("the thief's output", async () => output("thief-done"));
    reported.add(Number(/pid (\d+)/.exec(log)?.[1]));
    const [uid, cwd] = log.split("\n");
    assert.notEqual(uid, "0", "the workload is not root");
    assert.ok(
      cwd?.startsWith(`${workRoot(dataDir)}/`),
      `working dir ${cwd} is outside the data dir`,
    );
    assert.ok(!log.includes(secret), "the token's secret is not in the output");
    assert.ok(!log.includes("PRIVATE KEY"), "no key is in the output");
    // token, each key, ls raft, cat raft/* (the glob does not expand: raft is not listable).
    assert.equal(log.match(/Permission denied/g)?.length, keys.length + 3, log);
    assert.equal((await mill(["stop", "thief"])).status, 0);
  });

  test("a setsid child does not outlive mill stop", async () => {
    const script = `setsid sh -c 'echo "escaped $$"; exec sleep 300' & sleep 300 & wait`;
    const result = await mill(["run", "escape", "--", "sh", "-c", script]);
    assert.equal(result.status, 0, result.stderr);
    const log = await eventually("the escape's output", async () => output("escaped "));
    const escaped = Number(/escaped (\d+)/.exec(log)?.[1]);
    reported.add(escaped);
    assert.ok(alive(escaped), "the setsid sleep runs");
    const stat = readFileSync(`/proc/${escaped}/stat`, "utf8");
    const sid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[3]);
    assert.equal(sid, escaped, "it leads a session of its own");
    assert.equal((await mill(["stop", "escape"])).status, 0);
    await eventually("the setsid sleep gone", async () => (alive(escaped) ? undefined : true));
  });
});
