import assert from "node:assert/strict";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { checkAllocationId, workRoot } from "../../../lib/workloads/allocation-dirs.ts";
import { nodeKey, removeNodeCgroups } from "../../../lib/workloads/cgroups.ts";
import { sessionMembers } from "../../../lib/workloads/containment.ts";
import {
  type ExitStatus,
  type HeldChild,
  type ProcessEntry,
  type ProcessHost,
  parseProcessEntry,
  parseStartTime,
  type SpawnRequest,
} from "../../../lib/workloads/process-host.ts";
import type { DesiredAllocation } from "../../../lib/workloads/state.ts";
import {
  POLL_MS,
  STABLE_REPORT_MS,
  type StatusUpdate,
  Supervisor,
} from "../../../lib/workloads/supervisor.ts";
import { FakeClock } from "../../shared/fake-clock.ts";

interface FakeProcess {
  readonly pid: number;
  readonly request: SpawnRequest;
  alive: boolean;
  ignoresTerm: boolean;
  /** Its parent: init (1) for a spawned process, and for an orphan once its parent died. */
  ppid: number;
  /** The session (and process group) it leads or belongs to. */
  readonly sid: number;
  startTime: string;
  released: boolean;
  exit?: (exit: ExitStatus) => void;
}

/** The user the fake host runs workloads as: the test's own, so chown works without root. */
const USER = { name: "mill-workload", uid: process.getuid!(), gid: process.getgid!() };

/** Processes that exist only in memory; every event is written to `events`. */
class FakeHost implements ProcessHost {
  nextPid = 100;
  readonly table = new Map<number, FakeProcess>();
  readonly events: string[] = [];
  failSpawns = 0;
  ignoreTerm = false;

  userLookups = 0;

  workloadUser(): typeof USER {
    this.userLookups++;
    return USER;
  }

  async spawn(request: SpawnRequest): Promise<HeldChild> {
    if (this.failSpawns > 0) {
      this.failSpawns--;
      this.events.push(`spawn-failed ${request.argv[0]}`);
      throw new Error(`spawn ${request.argv[0]} ENOENT`);
    }
    const pid = this.nextPid++;
    const process: FakeProcess = {
      pid,
      request,
      alive: true,
      ignoresTerm: this.ignoreTerm,
      ppid: 1,
      sid: pid,
      startTime: `st${pid}`,
      released: false,
    };
    this.table.set(pid, process);
    this.events.push(`spawn ${pid} ${request.env.MILL_ALLOCATION_ID}`);
    return {
      pid,
      release: async () => {
        process.released = true;
      },
      onExit: (listener) => (process.exit = listener),
    };
  }
  startTime(pid: number): string | undefined {
    const process = this.table.get(pid);
    return process?.alive ? process.startTime : undefined;
  }
  processes(): ProcessEntry[] {
    return [...this.table.values()]
      .filter((p) => p.alive)
      .map((p) => ({
        pid: p.pid,
        ppid: p.ppid,
        pgid: p.sid,
        sid: p.sid,
        uid: USER.uid,
        startTime: p.startTime,
      }));
  }
  kill(pid: number, signal: "SIGTERM" | "SIGKILL"): void {
    this.events.push(`${signal} ${pid}`);
    const process = this.table.get(pid);
    if (!process?.alive || (signal === "SIGTERM" && process.ignoresTerm)) return;
    this.crash(pid, { code: null, signal });
  }
  crash(pid: number, exit: ExitStatus = { code: 1, signal: null }): void {
    const process = this.table.get(pid)!;
    process.alive = false;
    for (const child of this.table.values()) if (child.ppid === pid) child.ppid = 1;
    process.exit?.(exit);
  }
  /** A child of `parent` that called setsid(): a session of its own, still `parent`'s child. */
  setsidChild(parent: number, ignoresTerm: boolean): number {
    const pid = this.nextPid++;
    const { request } = this.table.get(parent)!;
    this.table.set(pid, {
      pid,
      request,
      alive: true,
      ignoresTerm,
      ppid: parent,
      sid: pid,
      startTime: `st${pid}`,
      released: false,
    });
    return pid;
  }
  spawns(): number {
    return this.events.filter((event) => event.startsWith("spawn ")).length;
  }
}

function allocation(id: number, overrides: Partial<DesiredAllocation> = {}): DesiredAllocation {
  return {
    id,
    workload: "web",
    specHash: "h1",
    restarts: 0,
    cpu: 0.25,
    memoryBytes: 256 * 1024 * 1024,
    env: ["GREETING=hi"],
    command: ["sleep", "3600"],
    ...overrides,
  };
}

let dataDir: string;
let clock: FakeClock;
let host: FakeHost;
let reports: StatusUpdate[];
let logs: string[];

function supervisor(extra: { cgroupRoot?: string; logCapBytes?: number } = {}): Supervisor {
  return new Supervisor({
    dataDir,
    clock,
    host,
    onStatus: (update) => reports.push(update),
    logger: { info: (m) => logs.push(`info ${m}`), warn: (m) => logs.push(`warn ${m}`) },
    cgroupRoot: extra.cgroupRoot ?? join(dataDir, "no-cgroup"),
    stopGraceMs: 2_000,
    ...(extra.logCapBytes ? { logCapBytes: extra.logCapBytes } : {}),
  });
}

beforeEach(() => {
  dataDir = fs.mkdtempSync(join(tmpdir(), "mill-supervisor-"));
  clock = new FakeClock();
  host = new FakeHost();
  reports = [];
  logs = [];
});

afterEach(() => {
  fs.rmSync(dataDir, { recursive: true, force: true });
  fs.rmSync(workRoot(dataDir), { recursive: true, force: true });
});

describe("supervisor", () => {
  test("asks the host for the workload user once, however many processes it starts", async () => {
    const sup = supervisor();
    await sup.reconcile([allocation(1), allocation(2)]);
    await sup.reconcile([allocation(1), allocation(2), allocation(3)]);
    assert.equal(host.table.size, 3);
    assert.equal(host.userLookups, 1);
    sup.close();
  });

  test("starts a process with only PATH, its ids and the spec's env, and reports it running", async () => {
    const sup = supervisor();
    await sup.reconcile([allocation(1)]);
    const [process] = host.table.values();
    assert.deepEqual(process!.request.argv, ["sleep", "3600"]);
    assert.deepEqual(Object.keys(process!.request.env).sort(), [
      "GREETING",
      "MILL_ALLOCATION_ID",
      "MILL_WORKLOAD",
      "PATH",
    ]);
    assert.equal(process!.request.env.GREETING, "hi");
    assert.equal(process!.request.cwd, join(workRoot(dataDir), "1"));
    assert.deepEqual(process!.request.user, USER);
    assert.equal(process!.released, true, "released once recorded");
    assert.equal(fs.statSync(workRoot(dataDir)).mode & 0o777, 0o711);
    assert.equal(fs.statSync(join(workRoot(dataDir), "1")).mode & 0o777, 0o700);
    assert.deepEqual(reports, [{ id: 1, status: "running", restarts: 0 }]);
    const pidFile = join(dataDir, "allocs", "1", "pid");
    assert.deepEqual(JSON.parse(fs.readFileSync(pidFile, "utf8")), {
      pid: 100,
      startTime: "st100",
      specHash: "h1",
      restarts: 0,
    });
    assert.equal(fs.statSync(pidFile).mode & 0o777, 0o600);
    assert.equal(fs.statSync(join(dataDir, "allocs")).mode & 0o777, 0o700);
    assert.deepEqual(sup.running(), [1]);
    sup.close();
  });

  test("restarts an exited process after 1 s, 5 s, 30 s, 60 s, 60 s, and again 1 s once it was stable", async () => {
    const sup = supervisor();
    await sup.reconcile([allocation(1)]);
    const waits: number[] = [];
    for (let restart = 1; restart <= 5; restart++) {
      host.crash(host.nextPid - 1);
      const before = host.spawns();
      let waited = 0;
      while (host.spawns() === before) {
        await clock.advance(500);
        waited += 500;
      }
      waits.push(waited);
    }
    assert.deepEqual(waits, [1_000, 5_000, 30_000, 60_000, 60_000]);
    await clock.advance(60_000);
    host.crash(host.nextPid - 1);
    await clock.advance(999);
    assert.equal(host.spawns(), 6);
    await clock.advance(1);
    assert.equal(host.spawns(), 7);
    // Each exit is reported failing, with its code and when the restart is due; a restarted
    // process is "running" again only once it stayed up STABLE_REPORT_MS (the 60 s above).
    assert.deepEqual(
      reports.map((r) => `${r.status}/${r.restarts}/${r.exitCode ?? "-"}`),
      [
        "running/0/-",
        "failing/0/1",
        "failing/1/1",
        "failing/2/1",
        "failing/3/1",
        "failing/4/1",
        "running/5/-",
        "failing/5/1",
      ],
    );
    assert.equal(reports.at(-1)?.restartAt, clock.time, "due 1 s after the crash: now");
    sup.close();
  });

  test("a command that cannot start is reported failed and retried with back-off", async () => {
    host.failSpawns = 2;
    const sup = supervisor();
    await sup.reconcile([allocation(1, { command: ["no-such-binary"] })]);
    const reason = "spawn no-such-binary ENOENT";
    assert.deepEqual(reports, [{ id: 1, status: "failed", restarts: 0, reason, restartAt: 1_000 }]);
    assert.ok(
      logs.some((line) =>
        line.startsWith('warn allocation 1 (web): cannot start "no-such-binary"'),
      ),
    );
    await clock.advance(1_000);
    await clock.advance(5_000);
    assert.deepEqual(reports.slice(1), [
      { id: 1, status: "failed", restarts: 1, reason, restartAt: 6_000 },
    ]);
    await clock.advance(STABLE_REPORT_MS);
    assert.deepEqual(reports.slice(2), [{ id: 1, status: "running", restarts: 2 }]);
    sup.close();
  });

  test("stop sends SIGTERM to the group, SIGKILL after the grace period, and forgets the pid", async () => {
    host.ignoreTerm = true;
    const sup = supervisor();
    await sup.reconcile([allocation(1)]);
    let stopped = false;
    const stopping = sup.reconcile([]).then(() => (stopped = true));
    await clock.advance(1_900);
    assert.equal(stopped, false);
    assert.deepEqual(host.events.slice(1), ["SIGTERM 100"]);
    await clock.advance(200);
    await stopping;
    assert.deepEqual(host.events.slice(1), ["SIGTERM 100", "SIGKILL 100"]);
    assert.equal(fs.existsSync(join(dataDir, "allocs", "1", "pid")), false);
    assert.deepEqual(sup.running(), []);
    await clock.advance(10_000);
    assert.equal(host.spawns(), 1, "a stopped allocation is not restarted");
    sup.close();
  });

  test("a setsid child that ignores SIGTERM is killed even when its parent's death orphans it before any poll", async () => {
    const sup = supervisor();
    await sup.reconcile([allocation(1)]);
    // No poll has run, so only the session tree links 101 to the allocation: once 100 dies of
    // the SIGTERM, 101 belongs to init, in a session of its own.
    const escaped = host.setsidChild(100, true);
    const stopping = sup.reconcile([]);
    await clock.advance(2_100);
    await stopping;
    assert.deepEqual(host.events.slice(1), ["SIGTERM 100", "SIGTERM 101", "SIGKILL 101"]);
    assert.equal(host.table.get(escaped)!.alive, false);
    sup.close();
  });

  test("stale allocations are stopped before new work starts", async () => {
    const sup = supervisor();
    await sup.reconcile([allocation(1), allocation(2)]);
    await sup.reconcile([allocation(3)]);
    assert.deepEqual(host.events, [
      "spawn 100 1",
      "spawn 101 2",
      "SIGTERM 100",
      "SIGTERM 101",
      "spawn 102 3",
    ]);
    sup.close();
  });

  test("a new agent adopts live processes instead of starting duplicates, and restarts dead ones", async () => {
    const first = supervisor();
    await first.reconcile([allocation(1), allocation(2)]);
    first.close();
    host.crash(101);
    const second = supervisor();
    await second.reconcile([allocation(1), allocation(2)]);
    assert.deepEqual(host.events, ["spawn 100 1", "spawn 101 2", "spawn 102 2"]);
    assert.deepEqual(reports.slice(2), [
      { id: 1, status: "running", restarts: 0 },
      { id: 2, status: "running", restarts: 1 },
    ]);
    assert.ok(logs.includes("info allocation 1 (web): adopted running process 100"));
    // An adopted process is not our child: its end is noticed by polling, then it restarts.
    host.crash(100);
    await clock.advance(POLL_MS);
    // Not our child: its exit code is unknown, so the report has none.
    assert.deepEqual(reports.at(-1), {
      id: 1,
      status: "failing",
      restarts: 0,
      restartAt: clock.time + 1_000,
    });
    await clock.advance(1_000);
    assert.equal(host.events.at(-1), "spawn 103 1");
    await clock.advance(STABLE_REPORT_MS);
    assert.deepEqual(reports.at(-1), { id: 1, status: "running", restarts: 1 });
    second.close();
  });

  test("a reused pid is not adopted: the start time must match", async () => {
    const first = supervisor();
    await first.reconcile([allocation(1)]);
    first.close();
    host.table.get(100)!.startTime = "someone-else";
    const second = supervisor();
    await second.reconcile([allocation(1)]);
    assert.equal(host.events.at(-1), "spawn 101 1");
    second.close();
  });

  test("a new agent stops live processes it is no longer asked to run", async () => {
    const first = supervisor();
    await first.reconcile([allocation(1)]);
    first.close();
    const second = supervisor();
    await second.reconcile([]);
    assert.deepEqual(host.events, ["spawn 100 1", "SIGTERM 100"]);
    assert.equal(fs.existsSync(join(dataDir, "allocs", "1", "pid")), false);
    second.close();
  });

  test("without usable cgroup v2 it says once that limits are reservations only", async () => {
    const sup = supervisor();
    await sup.reconcile([allocation(1), allocation(2)]);
    const warnings = logs.filter((line) => line.includes("reservations only"));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /is not a cgroup v2 mount/);
    assert.deepEqual(host.table.get(100)!.request.argv, ["sleep", "3600"]);
    sup.close();
  });

  test("with cgroup v2 each allocation gets cpu.max and memory.max and enters its group first", async () => {
    const root = join(dataDir, "cgroup");
    const parent = join(root, "mill", nodeKey(dataDir));
    fs.mkdirSync(parent, { recursive: true });
    fs.writeFileSync(join(root, "cgroup.controllers"), "cpuset cpu io memory pids\n");
    for (const dir of [root, join(root, "mill"), parent]) {
      fs.writeFileSync(join(dir, "cgroup.subtree_control"), "\n");
    }
    const sup = supervisor({ cgroupRoot: root });
    await sup.reconcile([allocation(7, { cpu: 1.5, memoryBytes: 1024 })]);
    const group = join(parent, "alloc-7");
    assert.equal(fs.readFileSync(join(group, "cpu.max"), "utf8"), "150000 100000\n");
    assert.equal(fs.readFileSync(join(group, "memory.max"), "utf8"), "1024\n");
    assert.equal(fs.readFileSync(join(root, "cgroup.subtree_control"), "utf8"), "+cpu +memory");
    assert.equal(
      fs.readFileSync(join(group, "cgroup.procs"), "utf8"),
      "100\n",
      "entered while held",
    );
    assert.deepEqual(host.table.get(100)!.request.argv, ["sleep", "3600"]);
    assert.ok(logs.some((line) => line.startsWith("info workload limits: cgroup v2")));
    // A stop signals what the group holds.
    await sup.reconcile([]);
    assert.deepEqual(host.events.slice(1), ["SIGTERM 100"]);
    sup.close();
  });

  test("a held process whose pid record cannot be written is killed before it runs", async () => {
    fs.mkdirSync(join(dataDir, "allocs", "1", "pid.tmp"), { recursive: true });
    const sup = supervisor();
    await sup.reconcile([allocation(1)]);
    assert.equal(host.table.get(100)!.released, false, "never ran the command");
    assert.equal(host.table.get(100)!.alive, false);
    assert.deepEqual(host.events, ["spawn 100 1", "SIGKILL 100"]);
    assert.equal(reports[0]?.status, "failed");
    assert.ok(logs.some((line) => /allocation 1 \(web\): cannot start "sleep": EISDIR/.test(line)));
    sup.close();
  });

  test("a reconcile removes this node's empty groups of allocations it no longer runs, and only those", async () => {
    const root = join(dataDir, "cgroup");
    const parent = join(root, "mill", nodeKey(dataDir));
    for (const id of [1, 3, 4]) fs.mkdirSync(join(parent, `alloc-${id}`), { recursive: true });
    // Allocation 4's group still lists a process; another node's group is not ours.
    fs.writeFileSync(join(parent, "alloc-4", "cgroup.procs"), "4242\n");
    const others = join(root, "mill", "another-node", "alloc-3");
    fs.mkdirSync(others, { recursive: true });
    const sup = supervisor({ cgroupRoot: root });
    await sup.reconcile([allocation(1)]);
    assert.deepEqual(fs.readdirSync(parent).sort(), ["alloc-1", "alloc-4"]);
    await sup.reconcile([]);
    assert.deepEqual(fs.readdirSync(parent), ["alloc-4"], "allocation 1 ended: its group went");
    assert.ok(fs.existsSync(others));
    sup.close();
  });

  test("a gone node's empty groups are removed; one still holding a process stays", () => {
    const root = join(dataDir, "cgroup");
    const parent = join(root, "mill", "k1");
    fs.mkdirSync(join(parent, "alloc-1"), { recursive: true });
    fs.mkdirSync(join(parent, "alloc-2", "busy"), { recursive: true });
    assert.equal(removeNodeCgroups(root, "k1"), 1);
    assert.deepEqual(fs.readdirSync(parent), ["alloc-2"]);
    fs.rmdirSync(join(parent, "alloc-2", "busy"));
    assert.equal(removeNodeCgroups(root, "k1"), 0);
    assert.equal(fs.existsSync(parent), false);
    assert.equal(removeNodeCgroups(undefined, "k1"), 0);
  });

  test("the log is capped by moving it to output.log.1", async () => {
    const sup = supervisor({ logCapBytes: 100 });
    await sup.reconcile([allocation(1)]);
    const log = join(dataDir, "allocs", "1", "output.log");
    fs.appendFileSync(log, "x".repeat(150));
    await clock.advance(POLL_MS);
    assert.equal(fs.statSync(log).size, 0);
    assert.equal(fs.readFileSync(`${log}.1`, "utf8"), "x".repeat(150));
    sup.close();
  });
});

describe("/proc/<pid>/stat", () => {
  test("the start time is field 22, whatever the command name holds", () => {
    const tail = "S 1 2 3 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 777123 3133440 394";
    assert.equal(parseStartTime(`42 (sleep) ${tail}`), "777123");
    assert.equal(parseStartTime(`42 (a) b (c)) ${tail}`), "777123");
    assert.equal(parseStartTime(`42 (sleep) Z${tail.slice(1)}`), undefined);
    assert.equal(parseStartTime("garbage"), undefined);
  });
});

describe("an allocation's processes without a cgroup", () => {
  const row = (pid: number, ppid: number, pgid: number, sid: number, uid = 990) => ({
    pid,
    ppid,
    pgid,
    sid,
    uid,
    startTime: `st${pid}`,
  });
  const table = [
    row(1, 0, 1, 1, 0),
    row(500, 1, 500, 500), // the allocation's first process
    row(501, 500, 500, 500), // its child
    row(502, 500, 502, 502), // `setsid sleep`: a new session, still its child
    row(503, 502, 503, 503), // a grandchild in yet another session
    row(600, 1, 600, 600), // another allocation
    row(700, 1, 700, 700), // was 502's child before 502 died: reparented to init
    row(800, 500, 500, 500, 0), // root's process that happens to be in the tree
  ];

  test("session, group, descendants and remembered processes belong; others do not", () => {
    const pids = (members: { pid: number }[]) => members.map((m) => m.pid);
    assert.deepEqual(pids(sessionMembers(table, 500, new Set(), 990)), [500, 501, 502, 503]);
    assert.deepEqual(
      pids(sessionMembers(table, 500, new Set(["700@st700"]), 990)),
      [500, 501, 502, 503, 700],
    );
    assert.deepEqual(
      pids(sessionMembers(table, 500, new Set(["700@other"]), 990)),
      [500, 501, 502, 503],
    );
    assert.deepEqual(pids(sessionMembers(table, 500)), [500, 501, 502, 503, 800]);
    assert.deepEqual(pids(sessionMembers(table, 999, new Set(), 990)), []);
  });

  test("a /proc stat line becomes a table row", () => {
    const tail = "S 1 2 3 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 777123 3133440 394";
    assert.deepEqual(parseProcessEntry(42, 990, `42 (a) b) ${tail}`), {
      pid: 42,
      ppid: 1,
      pgid: 2,
      sid: 3,
      uid: 990,
      startTime: "777123",
    });
    assert.equal(parseProcessEntry(42, 990, `42 (z) Z${tail.slice(1)}`), undefined);
  });

  test("an allocation id names a directory only when it is a positive safe integer", () => {
    for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 53, "../x" as unknown as number]) {
      assert.throws(() => checkAllocationId(bad), /is not a positive integer/);
    }
    assert.doesNotThrow(() => checkAllocationId(7));
  });
});
