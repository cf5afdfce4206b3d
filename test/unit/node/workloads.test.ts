import assert from "node:assert/strict";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { setImmediate as tick } from "node:timers/promises";
import type { AllocationStatusRequest } from "../../../lib/api/wire.ts";
import {
  type Command,
  commitThrough,
  decodeCommand,
  encodeCommand,
} from "../../../lib/cluster/commands.ts";
import type { NodeRecord } from "../../../lib/cluster/state.ts";
import { NodeWorkloads } from "../../../lib/node/workloads.ts";
import { NONE, type NodeId, type RaftStatus, type Role } from "../../../lib/raft/types.ts";
import type { ProcessHost } from "../../../lib/workloads/process-host.ts";
import { applied, init, register } from "../cluster/fixtures.ts";

const WEB: Command = {
  type: "WorkloadRun",
  spec: {
    name: "web",
    replicas: 2,
    cpu: 0.25,
    memoryBytes: 1024 ** 2,
    env: [],
    command: ["sleep", "1000"],
  },
  at: 3000,
  stop: [],
  place: [2, 1],
};

/** node-2 is this node; node-1 leads unless a test says otherwise. */
function setup() {
  const { fsm } = applied([init(), register("node-1", 1), register("node-2", 2), WEB]);
  let index = 10;
  const proposals: Command[] = [];
  const leaderListeners: ((leader: NodeId, role: Role) => void)[] = [];
  const barriers: Parameters<ConstructorParameters<typeof Promise<void>>[0]>[] = [];
  const clock = { now: 5000 };
  const raft = {
    role: "follower" as Role,
    leader: 1 as NodeId,
    recovering: undefined as RaftStatus["recovering"],
    status: (): RaftStatus => ({
      ...(raft.recovering ? { recovering: raft.recovering } : {}),
      id: 2,
      role: raft.role,
      term: 3,
      leader: raft.leader,
      commit: index,
      applied: index,
      lastIndex: index,
      membership: { voters: [1, 2], learners: [] },
    }),
    propose: async (data: Uint8Array) => {
      const decoded = decodeCommand(data);
      if (decoded.ok) proposals.push(decoded.value);
      const result = fsm.apply(++index, data);
      workloads.changed();
      return result;
    },
    readBarrier: () =>
      new Promise<void>((resolve, reject) => {
        barriers.push([resolve, reject]);
      }),
    onLeaderChange: (listener: (leader: NodeId, role: Role) => void) => {
      leaderListeners.push(listener);
      return () => {};
    },
  };
  const events: string[] = [];
  const live = new Set<number>();
  let nextPid = 500;
  const host: ProcessHost = {
    workloadUser: () => ({ name: "mill-workload", uid: process.getuid!(), gid: process.getgid!() }),
    async spawn(request) {
      const pid = nextPid++;
      live.add(pid);
      events.push(`spawn ${request.env.MILL_ALLOCATION_ID}`);
      return { pid, release: async () => {}, onExit: () => {} };
    },
    startTime: (pid) => (live.has(pid) ? `st${pid}` : undefined),
    processes: () =>
      [...live].map((pid) => ({
        pid,
        ppid: 1,
        pgid: pid,
        sid: pid,
        uid: process.getuid!(),
        startTime: `st${pid}`,
      })),
    kill(pid, signal) {
      events.push(`${signal} ${pid}`);
      live.delete(pid);
    },
  };
  const reports: AllocationStatusRequest[] = [];
  const logs: string[] = [];
  const options = {
    reportStatus: 200,
    reportFails: 0,
  };
  const workloads = new NodeWorkloads({
    dataDir,
    self: 2,
    raft,
    commit: commitThrough(raft),
    state: () => fsm.state,
    async report(leader: NodeRecord, request: AllocationStatusRequest) {
      if (options.reportFails > 0) {
        options.reportFails--;
        throw new Error(`cannot reach ${leader.name}`);
      }
      reports.push(request);
      await raft.propose(
        encodeCommand({ type: "AllocationStatus", node: 2, at: 4000, ...request }),
      );
      return options.reportStatus;
    },
    catchUpMs: 1500,
    log: {
      info: (message) => logs.push(`info ${message}`),
      warn: (message) => logs.push(`warn ${message}`),
      debug: () => {},
    },
    now: () => clock.now,
    supervisor: {
      host,
      clock: { now: () => 5000, after: () => () => {} },
      cgroupRoot: join(dataDir, "no-cgroup"),
    },
  });
  return {
    fsm,
    raft,
    workloads,
    events,
    reports,
    logs,
    proposals,
    options,
    leaderChanged: (leader: NodeId, role: Role) => {
      for (const listener of leaderListeners) listener(leader, role);
    },
    clock,
    /** Answers every read barrier asked so far. */
    caughtUp: async () => {
      for (const [resolve] of barriers.splice(0)) resolve();
      await settle();
    },
    /** Fails every read barrier asked so far, as when no leader answers. */
    noLeader: async () => {
      for (const [, reject] of barriers.splice(0)) reject(new Error("no leader is known"));
      await settle();
    },
    apply: async (command: Command) => {
      await raft.propose(encodeCommand(command));
      await settle();
    },
  };
}

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await tick();
}

let dataDir: string;
let node: ReturnType<typeof setup> | undefined;
beforeEach(() => {
  dataDir = fs.mkdtempSync(join(tmpdir(), "mill-node-workloads-"));
});
afterEach(() => {
  node?.workloads.close();
  node = undefined;
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe("NodeWorkloads", () => {
  test("starts nothing until the node has caught up, then runs its own allocations", async () => {
    node = setup();
    node.workloads.changed();
    await settle();
    assert.deepEqual(node.events, []);
    await node.caughtUp();
    assert.deepEqual(node.events, ["spawn 1"]);
    await node.apply({ type: "AllocationsLost", node: 2, at: 6000, replacements: [] });
    assert.deepEqual(node.events, ["spawn 1", "SIGTERM 500"]);
  });

  test("without a leader past catchUpMs it runs its local state, unless it is rebuilding a lost log", async () => {
    node = setup();
    node.raft.recovering = { term: 3, index: 9 };
    node.clock.now += 2000;
    await node.noLeader();
    node.workloads.tick();
    await node.noLeader();
    assert.deepEqual([node.events, node.logs], [[], []], "its local state is not the cluster's");
    node.raft.recovering = undefined;
    node.workloads.tick();
    await node.noLeader();
    assert.deepEqual(node.events, ["spawn 1"]);
    assert.match(node.logs.join("\n"), /no leader answered within 1500 ms/);
  });

  test("reports to the leader, retrying on later ticks until one is delivered", async () => {
    node = setup();
    node.options.reportFails = 1;
    await node.caughtUp();
    assert.deepEqual(node.reports, []);
    node.workloads.tick();
    await settle();
    assert.deepEqual(node.reports, [{ id: 1, status: "running", restarts: 0 }]);
    assert.equal(node.fsm.state.workloads.allocations.get(1)?.status, "running");
    node.workloads.tick();
    await settle();
    assert.equal(node.reports.length, 1, "a report the state shows is not sent again");
  });

  test("on the leader, a tick commits the scheduler's plan for a node that went down", async () => {
    node = setup();
    node.raft.role = "leader";
    node.raft.leader = 2;
    node.fsm.apply(20, encodeCommand({ type: "NodeDown", id: 1, at: 6000 }));
    node.workloads.tick();
    await node.caughtUp();
    const lost = node.proposals.filter((command) => command.type === "AllocationsLost");
    assert.deepEqual(lost, [
      { type: "AllocationsLost", node: 1, at: 5000, replacements: [{ workload: "web", node: 2 }] },
    ]);
    assert.deepEqual(node.events, ["spawn 1", "spawn 3"], "its own and the replacement");
  });

  test("says so when it loses the leader while processes run, and when it is back", async () => {
    node = setup();
    await node.caughtUp();
    node.leaderChanged(NONE, "precandidate");
    node.leaderChanged(NONE, "precandidate");
    node.leaderChanged(1, "follower");
    assert.deepEqual(
      node.logs.filter((line) => /contact/.test(line)),
      [
        "warn lost contact with the leader: keeping 1 allocation process(es) running until the cluster decides",
        "info in contact with leader node 1 again",
      ],
    );
  });
});
