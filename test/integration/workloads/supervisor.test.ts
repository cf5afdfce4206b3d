/**
 * The supervisor over real processes: sh and sleep in their own process groups, real signals,
 * real /proc start times, real files. Waits on the supervisor's own reports, never on sleeps.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { afterEach, beforeEach, describe, test } from "node:test";
import { workRoot } from "../../../lib/workloads/allocation-dirs.ts";
import { defaultCgroupRoot, prepareCgroupParent } from "../../../lib/workloads/cgroups.ts";
import { nodeProcessHost } from "../../../lib/workloads/process-host.ts";
import type { DesiredAllocation } from "../../../lib/workloads/state.ts";
import { type StatusUpdate, Supervisor } from "../../../lib/workloads/supervisor.ts";
import { removeTestCgroups } from "../../shared/cgroups.ts";

let dataDir: string;
let supervisors: Supervisor[];
let reports: StatusUpdate[];
let waiters: { match: (update: StatusUpdate) => boolean; resolve: () => void }[];
let logs: string[];
let logWaiters: { text: string; resolve: () => void }[];

function log(message: string): void {
  logs.push(message);
  for (const waiter of logWaiters.filter((w) => message.includes(w.text))) {
    logWaiters.splice(logWaiters.indexOf(waiter), 1);
    waiter.resolve();
  }
}

function logged(text: string): Promise<void> {
  return new Promise((resolve) => logWaiters.push({ text, resolve }));
}

function open(stopGraceMs = 5_000, cgroupRoot?: string): Supervisor {
  const supervisor = new Supervisor({
    dataDir,
    stopGraceMs,
    ...(cgroupRoot ? { cgroupRoot } : {}),
    onStatus: (update) => {
      reports.push(update);
      for (const waiter of waiters.filter((w) => w.match(update))) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    },
    logger: { info: log, warn: log },
  });
  supervisors.push(supervisor);
  return supervisor;
}

function reported(id: number, restarts: number): Promise<void> {
  if (reports.some((r) => r.id === id && r.status === "running" && r.restarts === restarts)) {
    return Promise.resolve();
  }
  return new Promise((resolve) =>
    waiters.push({
      match: (r) => r.id === id && r.status === "running" && r.restarts === restarts,
      resolve,
    }),
  );
}

function allocation(id: number, script: string): DesiredAllocation {
  return {
    id,
    workload: "web",
    specHash: "h1",
    restarts: 0,
    cpu: 0.1,
    memoryBytes: 64 * 1024 * 1024,
    env: ["GREETING=hello"],
    command: ["sh", "-c", script],
  };
}

function pidOf(id: number): number {
  return JSON.parse(fs.readFileSync(join(dataDir, "allocs", String(id), "pid"), "utf8")).pid;
}

/** Whether a live process (zombies are dead, only not yet reaped) is left in the group. */
function groupAlive(pgid: number): boolean {
  return nodeProcessHost.processes().some((entry) => entry.pgid === pgid);
}

/**
 * Reads until `text` is in the allocation's log, driven by fs.watch rather than polling. The
 * watcher starts before the first read, so a write between the two cannot be missed (the
 * fs/promises iterator only starts watching on its first step, which lost such writes).
 */
function logContains(id: number, text: string): Promise<string> {
  const path = join(dataDir, "allocs", String(id), "output.log");
  const read = () => (fs.existsSync(path) ? fs.readFileSync(path, "utf8") : "");
  return new Promise((resolve) => {
    const check = () => {
      const content = read();
      if (!content.includes(text)) return;
      watcher.close();
      resolve(content);
    };
    const watcher = fs.watch(join(dataDir, "allocs", String(id)), check);
    watchers.add(watcher);
    check();
  });
}

/** Watchers still open when a test ends would keep this file's process alive after a failure. */
const watchers = new Set<fs.FSWatcher>();

const started = new Set<number>();

beforeEach(() => {
  dataDir = fs.mkdtempSync(join(tmpdir(), "mill-supervisor-it-"));
  supervisors = [];
  reports = [];
  waiters = [];
  logs = [];
  logWaiters = [];
});

afterEach(async () => {
  for (const watcher of watchers) watcher.close();
  watchers.clear();
  for (const supervisor of supervisors) supervisor.close();
  // Whatever a failed test left behind: only the groups this file started.
  for (const pgid of started) if (groupAlive(pgid)) process.kill(-pgid, "SIGKILL");
  started.clear();
  fs.rmSync(dataDir, { recursive: true, force: true });
  fs.rmSync(workRoot(dataDir), { recursive: true, force: true });
  await removeTestCgroups([dataDir]);
});

/** Whether a process (not a group) is alive and not a zombie. */
function processAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(")") + 2));
  } catch {
    return false;
  }
}

/** Where this host can give allocations cgroups, or why not. */
const cgroupRoot = defaultCgroupRoot();
const noCgroup = (() => {
  if (!cgroupRoot) return "this host has no cgroup v2 mount";
  const probe = prepareCgroupParent(cgroupRoot, "mill-it-probe");
  if (!probe.parent) return probe.problem;
  fs.rmdirSync(probe.parent.dir);
  return undefined;
})();

/**
 * Starts a workload that puts a `setsid sleep` in a session of its own and prints its pid, stops
 * it, and returns that pid (which must be gone by then).
 */
async function setsidSurvivor(supervisor: Supervisor): Promise<number> {
  const script = `setsid sh -c 'echo "escaped $$"; exec sleep 300' & sleep 300 & wait`;
  await supervisor.reconcile([allocation(1, script)]);
  started.add(pidOf(1));
  const escaped = Number(/escaped (\d+)/.exec(await logContains(1, "escaped "))![1]);
  const stat = fs.readFileSync(`/proc/${escaped}/stat`, "utf8");
  const sid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[3]);
  assert.equal(sid, escaped, "the sleep leads a session of its own");
  assert.notEqual(sid, pidOf(1));
  await supervisor.reconcile([]);
  return escaped;
}

const SERVE = 'echo "started $MILL_ALLOCATION_ID $GREETING"; sleep 300 & wait';

describe("supervisor with real processes", { timeout: 20_000 }, () => {
  test("runs the command in its own group with its env and logs its output", async () => {
    const supervisor = open();
    await supervisor.reconcile([allocation(1, SERVE)]);
    const pid = pidOf(1);
    started.add(pid);
    assert.equal(reports[0]?.status, "running");
    assert.match(await logContains(1, "started"), /started 1 hello/);
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const pgid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
    assert.equal(pgid, pid, "the allocation leads its own process group");
    assert.ok(
      logs.some((line) => line.includes("reservations only") || line.includes("cgroup v2")),
    );
  });

  test("kill -9 → restarted after the back-off, restart counted", async () => {
    const supervisor = open();
    await supervisor.reconcile([allocation(1, SERVE)]);
    const first = pidOf(1);
    started.add(first);
    // reconcile() resolves once the shell is exec'd, not once it has echoed: killing it before
    // its echo left one "started" line where the test waits for two (measured: 15 of 40 times).
    await logContains(1, "started");
    process.kill(first, "SIGKILL");
    await reported(1, 1);
    const second = pidOf(1);
    started.add(second);
    assert.notEqual(second, first);
    assert.ok(groupAlive(second));
    const output = await logContains(1, "started 1 hello\nstarted 1 hello");
    assert.equal(output.match(/started 1 hello/g)?.length, 2);
  });

  test("a new supervisor adopts the live process and restarts the dead one", async () => {
    const first = open();
    await first.reconcile([allocation(1, SERVE), allocation(2, SERVE)]);
    const [live, dead] = [pidOf(1), pidOf(2)];
    started.add(live).add(dead);
    const exited = logged(`process ${dead} exited`);
    process.kill(-dead, "SIGKILL");
    await exited;
    first.close();
    const second = open();
    reports = [];
    await second.reconcile([allocation(1, SERVE), allocation(2, SERVE)]);
    assert.equal(pidOf(1), live, "the live process is adopted, not duplicated");
    assert.notEqual(pidOf(2), dead);
    started.add(pidOf(2));
    assert.deepEqual(reports, [
      { id: 1, status: "running", restarts: 0 },
      { id: 2, status: "running", restarts: 1 },
    ]);
  });

  test("stop leaves no process of the group, even one that ignores SIGTERM", async () => {
    const supervisor = open(300);
    const stubborn = 'trap "" TERM; echo trapped; sleep 300 & while :; do wait; done';
    await supervisor.reconcile([allocation(1, SERVE), allocation(2, stubborn)]);
    const pids = [pidOf(1), pidOf(2)];
    for (const pid of pids) started.add(pid);
    await logContains(1, "started");
    // A SIGTERM before the trap is set would end it at once: wait until it ignores SIGTERM.
    await logContains(2, "trapped");
    await supervisor.reconcile([]);
    for (const pid of pids) assert.equal(groupAlive(pid), false, `group ${pid} is gone`);
    assert.ok(
      logs.some((line) =>
        line.includes("allocation 2: still running after 300 ms, sending SIGKILL"),
      ),
      logs.join("\n"),
    );
    assert.equal(fs.existsSync(join(dataDir, "allocs", "1", "pid")), false);
  });

  test("a setsid child does not escape stop: cgroup v2", { skip: noCgroup }, async () => {
    const escaped = await setsidSurvivor(open(300, cgroupRoot));
    assert.equal(processAlive(escaped), false, `the setsid sleep ${escaped} is gone`);
  });

  test("a setsid child does not escape stop: without cgroups, by session and tree", async () => {
    const escaped = await setsidSurvivor(open(300, join(dataDir, "not-a-cgroup")));
    assert.equal(processAlive(escaped), false, `the setsid sleep ${escaped} is gone`);
    assert.ok(logs.some((line) => line.includes("stop follows each allocation's session")));
  });

  test("a workload runs unprivileged, outside the data dir, and cannot read it", {
    skip: process.getuid?.() === 0 ? undefined : "needs root to switch users",
  }, async () => {
    fs.writeFileSync(join(dataDir, "token"), "mill_t_secret\n", { mode: 0o600 });
    const thief = `id -u; pwd; cat ${dataDir}/token; ls ${dataDir}; cat ../../token; echo done`;
    const supervisor = open();
    await supervisor.reconcile([allocation(1, thief)]);
    started.add(pidOf(1));
    const output = await logContains(1, "done");
    const [uid, cwd] = output.split("\n");
    assert.notEqual(uid, "0", "not root");
    assert.equal(cwd, join(workRoot(dataDir), "1"));
    assert.doesNotMatch(output, /mill_t_secret/);
    assert.equal(output.match(/Permission denied/g)?.length, 2, output);
  });
});
