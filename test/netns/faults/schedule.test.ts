/**
 * The fault suite's pure parts: schedules are a function of the seed, faults resolve to the
 * right links and majority sides, and the checker catches each violation it exists for.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeCommand } from "../../../lib/cluster/commands.ts";
import type { NodesEntry } from "../../../lib/cluster/views.ts";
import { encodeMembership } from "../../../lib/raft/membership.ts";
import type { Entry } from "../../../lib/raft/types.ts";
import {
  type ClientWriteRecord,
  checkAgreement,
  checkConfiguration,
  checkDigests,
  committedLog,
  falseNodeDowns,
  lostRotation,
  lostWorkloadWrites,
  misplacedAllocations,
  missingNodeDowns,
  type NodeView,
  statusChanges,
} from "./check.ts";
import {
  describeFault,
  formatSchedule,
  majoritySide,
  makeSchedule,
  pickMember,
  replayCommand,
  resolveFault,
  unheard,
} from "./schedule.ts";

const three = ["node-1", "node-2", "node-3"];

describe("fault schedules", () => {
  test("the same seed gives the same schedule, another seed another one", () => {
    const options = { steps: 12, joiners: 2 };
    assert.deepEqual(makeSchedule(7, options), makeSchedule(7, options));
    assert.notDeepEqual(makeSchedule(7, options).steps, makeSchedule(8, options).steps);
  });

  test("every spare host gets a join, and the printout names the seed and the replay", () => {
    for (let seed = 1; seed <= 50; seed++) {
      const schedule = makeSchedule(seed, { steps: 5, joiners: 2 });
      assert.equal(schedule.steps.filter((step) => step.joinAfterMs !== undefined).length, 2);
      assert.match(formatSchedule(schedule), new RegExp(`^seed ${seed}, 5 steps:`));
      assert.match(replayCommand(schedule), new RegExp(`FAULT_SEED=${seed} .*FAULT_STEPS=5`));
    }
  });

  test("client writes leave each seed's faults and joins as they were before writes existed", () => {
    // Seed 100 starts the README's soak; these are its first steps as drawn before client writes.
    const steps = makeSchedule(100, { steps: 8, joiners: 2 }).steps.slice(0, 4);
    assert.deepEqual(
      steps.map((step) => [describeFault(step.fault), step.joinAfterMs]),
      [
        ["ring: each member drops the next one (all) for 3384 ms", undefined],
        ["isolate leader (wireguard) for 3238 ms", undefined],
        ["isolate leader (all) for 2654 ms", 275],
        ["isolate leader (wireguard) for 4787 ms", 1154],
      ],
    );
  });

  test("every step has one to three client writes, in order, while its fault holds", () => {
    const steps = Array.from(
      { length: 40 },
      (_, seed) => makeSchedule(seed, { steps: 10, joiners: 2 }).steps,
    ).flat();
    for (const { fault, writes } of steps) {
      assert.ok(writes.length >= 1 && writes.length <= 3);
      assert.ok(
        writes.every(
          (w, i) => w.afterMs <= fault.holdMs && w.afterMs >= (writes[i - 1]?.afterMs ?? 0),
        ),
      );
    }
    const kinds = new Set(steps.flatMap((step) => step.writes.map((w) => w.kind)));
    assert.deepEqual(kinds, new Set(["run", "stop", "rotate"]));
  });

  test("pauses outlast the election timeout, and faults are held long enough to matter", () => {
    const steps = Array.from(
      { length: 40 },
      (_, seed) => makeSchedule(seed, { steps: 10, joiners: 0 }).steps,
    ).flat();
    for (const { fault } of steps) {
      if (fault.kind === "pause") assert.ok(fault.holdMs >= 2500, describeFault(fault));
      else assert.ok(fault.holdMs >= 500);
    }
    assert.deepEqual(
      new Set(steps.map((step) => step.fault.kind)),
      new Set(["kill", "pause", "isolate", "one-way", "ring"]),
    );
  });
});

describe("lifecycle steps", () => {
  test("come from their own stream: faults, joins and writes are as they were without them", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const options = { steps: 8, joiners: 2 };
      const plain = makeSchedule(seed, { ...options, lifecycle: false }).steps;
      const full = makeSchedule(seed, options).steps;
      assert.deepEqual(
        full.map(({ lifecycle: _, ...rest }) => rest),
        plain,
      );
      assert.ok(full.every((step) => step.lifecycle !== undefined));
    }
  });

  test("every kind is drawn, within its fault, and the printout names it", () => {
    const steps = Array.from(
      { length: 40 },
      (_, seed) => makeSchedule(seed, { steps: 10, joiners: 2 }).steps,
    ).flat();
    assert.deepEqual(
      new Set(steps.map((step) => step.lifecycle!.kind)),
      new Set(["drain", "undrain", "remove", "remove-dead", "leave", "join"]),
    );
    for (const { fault, lifecycle } of steps) assert.ok(lifecycle!.afterMs <= fault.holdMs);
    assert.match(
      formatSchedule(makeSchedule(1, { steps: 5, joiners: 2 })),
      /member \d after \d+ ms|join a spare host after/,
    );
  });

  test("the CI seeds drain, remove, destroy and remove, and leave", () => {
    const kinds = [1, 2].flatMap((seed) =>
      makeSchedule(seed, { steps: 5, joiners: 2 }).steps.map((step) => step.lifecycle!.kind),
    );
    for (const kind of ["drain", "remove", "remove-dead", "leave"] as const)
      assert.ok(kinds.includes(kind), `${kind} in ${kinds.join(", ")}`);
  });

  test("a pick wraps around the sorted candidates; none without candidates", () => {
    assert.equal(pickMember(4, ["node-3", "node-1", "node-2"]), "node-2");
    assert.equal(pickMember(0, []), undefined);
  });
});

describe("resolving faults", () => {
  test("isolating the leader cuts every link of the leader, both ways", () => {
    const resolved = resolveFault(
      { kind: "isolate", target: { role: "leader" }, match: "all", holdMs: 1 },
      three,
      "node-2",
    );
    assert.deepEqual(resolved.cuts.map((cut) => `${cut.from}>${cut.to}`).sort(), [
      "node-1>node-2",
      "node-2>node-1",
      "node-2>node-3",
      "node-3>node-2",
    ]);
    assert.deepEqual(majoritySide(resolved, three), ["node-1", "node-3"]);
  });

  test("a follower pick skips the leader and wraps around", () => {
    const kill = (pick: number) =>
      resolveFault({ kind: "kill", target: { role: "follower", pick }, holdMs: 1 }, three, "node-1")
        .process;
    assert.deepEqual([0, 1, 2, 3].map(kill), ["node-2", "node-3", "node-2", "node-3"]);
  });

  test("a one-way drop leaves a majority on both sides of the cut; a three-node ring leaves none", () => {
    const oneWay = resolveFault(
      { kind: "one-way", follower: 0, direction: "to-leader", match: "wireguard", holdMs: 1 },
      three,
      "node-3",
    );
    assert.deepEqual(oneWay.cuts, [{ from: "node-1", to: "node-3" }]);
    assert.deepEqual(majoritySide(oneWay, three), three);
    const ring = resolveFault({ kind: "ring", match: "all", holdMs: 1 }, three, "node-1");
    assert.deepEqual(majoritySide(ring, three), []);
  });

  test("a five-node ring leaves no connected majority; a killed node is off the majority side", () => {
    const five = ["node-1", "node-2", "node-3", "node-4", "node-5"];
    assert.deepEqual(
      majoritySide(resolveFault({ kind: "ring", match: "all", holdMs: 1 }, five, "node-1"), five),
      [],
    );
    const kill = resolveFault(
      { kind: "kill", target: { role: "leader" }, holdMs: 1 },
      five,
      "node-4",
    );
    assert.deepEqual(majoritySide(kill, five), ["node-1", "node-2", "node-3", "node-5"]);
    assert.deepEqual(unheard(kill), [{ node: "node-4" }]);
  });

  test("a cut makes each end unheard by the other, once per pair", () => {
    const isolate = resolveFault(
      { kind: "isolate", target: { role: "follower", pick: 0 }, match: "all", holdMs: 1 },
      three,
      "node-1",
    );
    assert.deepEqual(
      unheard(isolate)
        .map((pair) => `${pair.node}/${pair.peer}`)
        .sort(),
      ["node-1/node-2", "node-2/node-1", "node-2/node-3", "node-3/node-2"],
    );
  });
});

function entry(id: number, overrides: Partial<NodesEntry> = {}): NodesEntry {
  return {
    name: `node-${id}`,
    id,
    status: "ready",
    role: "voter",
    advertise: `192.168.1.${id}`,
    apiPort: 4400,
    raftPort: 4401,
    wgPort: 4400,
    wgPublicKey: `key-${id}`,
    joinedAt: id,
    version: null,
    meshAddress: `10.99.0.${id}`,
    ...overrides,
  };
}

function view(node: string, entries: NodesEntry[], leader = "node-1", term = 3): NodeView {
  return { node, nodes: { leader, term, nodes: entries } };
}

describe("the checker", () => {
  const healthy = [entry(1), entry(2), entry(3)];

  test("identical views from every member pass", () => {
    assert.deepEqual(
      checkAgreement(
        three.map((node) => view(node, healthy)),
        three,
      ),
      [],
    );
  });

  test("a member that does not answer, or two leaders, fail", () => {
    assert.deepEqual(checkAgreement([view("node-1", healthy), view("node-2", healthy)], three), [
      "node-3 did not answer",
    ]);
    const split = checkAgreement(
      [view("node-1", healthy), view("node-2", healthy), view("node-3", healthy, "node-3", 4)],
      three,
    );
    assert.equal(split.length, 1);
    assert.match(split[0]!, /^no single leader: .*node-3 says node-3 \(term 4\)/);
  });

  test("a lost acknowledged join, a stranger and a duplicated mesh address are each named", () => {
    const four = [...three, "node-4"];
    const withFour = [...healthy, entry(4)];
    const lost = checkAgreement(
      [...three.map((n) => view(n, withFour)), view("node-4", healthy)],
      four,
    );
    assert.ok(lost.includes("node-4 has lost node-4"), lost.join("\n"));
    assert.ok(lost.includes("node-4's committed state differs from node-1's"));
    const stranger = checkAgreement(
      three.map((n) => view(n, withFour)),
      three,
    );
    assert.ok(stranger.every((problem) => / lists node-4, which never joined$/.test(problem)));
    assert.equal(stranger.length, 3);
    const twins = [entry(1), entry(2), entry(3, { meshAddress: "10.99.0.2" })];
    assert.ok(
      checkAgreement(
        three.map((n) => view(n, twins)),
        three,
      ).includes("node-1 sees two nodes with mesh address 10.99.0.2"),
    );
  });

  test("a member left down or as a learner fails, and differing digests fail", () => {
    const down = [entry(1), entry(2, { status: "down" }), entry(3, { role: "learner" })];
    const problems = checkAgreement(
      three.map((n) => view(n, down)),
      three,
    );
    assert.ok(problems.includes("node-1 sees node-2 as down voter, not ready voter"));
    assert.ok(problems.includes("node-1 sees node-3 as ready learner, not ready voter"));
    const at = (applied: number, stateSha256: string) => ({ applied, stateSha256 });
    assert.deepEqual(
      checkDigests(
        new Map([
          ["node-1", at(9, "aa")],
          ["node-2", at(9, "aa")],
        ]),
      ),
      [],
    );
    assert.deepEqual(
      checkDigests(
        new Map([
          ["node-1", at(9, "aa")],
          ["node-2", at(8, "bb")],
        ]),
      ),
      ["applied indexes differ: node-1=9, node-2=8"],
    );
    assert.deepEqual(
      checkDigests(
        new Map([
          ["node-1", at(9, "aa")],
          ["node-2", at(9, "bb")],
        ]),
      ),
      ["state digests differ at index 9: node-1=aa, node-2=bb"],
    );
  });

  test("a drained member must show draining, and a removed node must be gone from every list", () => {
    const drained = new Set(["node-2"]);
    const draining = [entry(1), entry(2, { status: "draining" }), entry(3)];
    assert.deepEqual(
      checkAgreement(
        three.map((n) => view(n, draining)),
        three,
        drained,
      ),
      [],
    );
    assert.ok(
      checkAgreement(
        three.map((n) => view(n, healthy)),
        three,
        drained,
      ).includes("node-1 sees node-2 as ready voter, not draining voter"),
    );
    const two = ["node-1", "node-2"];
    const stillThere = checkAgreement(
      two.map((n) => view(n, healthy)),
      two,
      new Set(),
      new Set(["node-3"]),
    );
    assert.deepEqual(stillThere, [
      "node-1 still lists node-3, whose removal was acknowledged",
      "node-2 still lists node-3, whose removal was acknowledged",
    ]);
  });

  test("a live allocation on a drained or removed node is named; lost and stopped ones are not", () => {
    const rows = [
      { name: "w1", node: "node-2", status: "running" },
      { name: "w2", node: "node-2", status: "lost" },
      { name: "w3", node: "node-4", status: "pending" },
      { name: "w4", node: "node-1", status: "running" },
      { name: "w5", node: "node-4", status: "stopped" },
    ];
    const empty = new Map([
      ["node-2", "its drain was acknowledged"],
      ["node-4", "its removal was acknowledged"],
    ]);
    assert.deepEqual(misplacedAllocations(rows, empty), [
      "node-2 holds a running allocation of w1, though its drain was acknowledged",
      "node-4 holds a pending allocation of w3, though its removal was acknowledged",
    ]);
  });

  test("the committed configuration must be the members, all voters: a leftover voter or learner is named", () => {
    const config = (index: number, voters: number[], learners: number[] = []): Entry => ({
      index,
      term: 1,
      kind: "membership",
      data: encodeMembership({ voters, learners }),
    });
    const log = [config(1, [1]), config(2, [1, 2, 3]), config(3, [1, 3])];
    assert.deepEqual(checkConfiguration(log, [3, 1]), []);
    assert.deepEqual(checkConfiguration(log, [1]), [
      "the committed Raft configuration (entry 3) has voters 1, 3, the members are 1",
    ]);
    assert.deepEqual(checkConfiguration([...log, config(4, [1, 3], [5])], [1, 3]), [
      "the committed Raft configuration (entry 4) still has learners 5",
    ]);
  });

  test("a NodeDown is false unless the node was unheard by that leader within the timeout before", () => {
    const windows = [
      { node: "node-2", start: 1000, end: 4000, what: "pause" },
      { node: "node-3", peer: "node-1", start: 10_000, end: 12_000, what: "cut" },
    ];
    const downs = [
      { node: "node-2", at: 3000, leader: "node-1" },
      { node: "node-2", at: 7400, leader: "node-1" },
      { node: "node-2", at: 7600, leader: "node-1" },
      { node: "node-3", at: 12_500, leader: "node-1" },
      { node: "node-3", at: 12_500, leader: "node-2" },
      { node: "node-1", at: 5000, leader: "node-3" },
    ];
    assert.deepEqual(
      falseNodeDowns(downs, windows, 2000, 1500).map((d) => `${d.node}@${d.at} by ${d.leader}`),
      ["node-2@7600 by node-1", "node-3@12500 by node-2", "node-1@5000 by node-3"],
    );
  });
});

describe("the committed history", () => {
  const command = (index: number, term: number, data: Uint8Array): Entry => ({
    index,
    term,
    kind: "command",
    data,
  });
  const down = (id: number, at: number) => encodeCommand({ type: "NodeDown", id, at });
  const up = (id: number, at: number) => encodeCommand({ type: "NodeUp", id, at });
  const noop = (index: number, term: number): Entry => ({
    index,
    term,
    kind: "noop",
    data: new Uint8Array(0),
  });

  test("is taken up to the highest commit, from nodes whose own commit covers each entry", () => {
    const history = [noop(1, 1), command(2, 1, down(3, 5000)), command(3, 2, up(3, 6000))];
    const { entries, problems } = committedLog(
      new Map([
        // node-1 recorded commit 3; node-2 only 1, and its entry 3 (term 1) was never committed.
        ["node-1", { commit: 3, entries: history }],
        ["node-2", { commit: 1, entries: [noop(1, 1), history[1]!, command(3, 1, down(2, 1))] }],
      ]),
    );
    assert.deepEqual(problems, []);
    assert.deepEqual(
      entries.map((entry) => entry.index),
      [1, 2, 3],
    );
    assert.deepEqual(statusChanges(entries), [
      { type: "NodeDown", id: 3, at: 5000, term: 1 },
      { type: "NodeUp", id: 3, at: 6000, term: 2 },
    ]);
    // As `mill remove` commits it: inside the membership entry that removes the voter.
    const remove: Entry = {
      index: 4,
      term: 2,
      kind: "membership",
      data: encodeMembership(
        { voters: [1, 3], learners: [] },
        encodeCommand({ type: "NodeRemove", id: 2, at: 7000 }),
      ),
    };
    assert.deepEqual(statusChanges([remove]), [{ type: "NodeRemove", id: 2, at: 7000, term: 2 }]);
  });

  test("two committed entries that differ at one index, and a gap, are reported", () => {
    const conflict = committedLog(
      new Map([
        ["node-1", { commit: 2, entries: [noop(1, 1), command(2, 1, down(3, 1))] }],
        ["node-2", { commit: 2, entries: [noop(1, 1), command(2, 2, down(3, 1))] }],
      ]),
    );
    assert.deepEqual(conflict.problems, [
      "committed entry 2 differs: term 1 on node-1, term 2 on node-2",
    ]);
    const gap = committedLog(new Map([["node-1", { commit: 3, entries: [noop(3, 1)] }]]));
    assert.deepEqual(gap.problems, [
      "the committed history is incomplete: 2 of 3 entries are on no node (first 1)",
    ]);
  });

  test("an owed NodeDown is missing unless one of that node falls in its window", () => {
    const owed = [
      { node: "node-2", from: 1000, until: 5000, what: "step 1" },
      { node: "node-3", from: 8000, until: 12_000, what: "step 2" },
    ];
    const downs = [
      { node: "node-2", at: 3100 },
      { node: "node-3", at: 12_500 },
      { node: "node-1", at: 9000 },
    ];
    assert.deepEqual(
      missingNodeDowns(owed, downs).map((o) => o.what),
      ["step 2"],
    );
  });

  test("a NodeDown whose leader is unknown is explained by a cut with any peer", () => {
    const cut = [{ node: "node-3", peer: "node-2", start: 1000, end: 3000, what: "cut" }];
    assert.deepEqual(falseNodeDowns([{ node: "node-3", at: 2500 }], cut, 2000, 600), []);
    assert.equal(
      falseNodeDowns([{ node: "node-3", at: 2500, leader: "node-1" }], cut, 2000, 600).length,
      1,
    );
  });
});

describe("client writes", () => {
  const write = (kind: ClientWriteRecord["kind"], subject: string, acked = true) => ({
    kind,
    subject,
    acked,
  });

  test("an acknowledged run must be there and an acknowledged stop gone; unacknowledged ones may go either way", () => {
    const writes = [
      write("run", "w1"),
      write("run", "w2"),
      write("stop", "w1"),
      write("run", "w3", false),
      write("run", "w4"),
      write("stop", "w4", false),
    ];
    assert.deepEqual(lostWorkloadWrites(writes, new Set(["w2"])), []);
    assert.deepEqual(lostWorkloadWrites(writes, new Set(["w2", "w3", "w4"])), []);
    assert.deepEqual(lostWorkloadWrites(writes, new Set(["w1"])), [
      "the acknowledged mill stop w1 is lost: the workload is still there",
      "the acknowledged mill run w2 is lost: no such workload",
    ]);
  });

  test("the last acknowledged rotation's token is in force, unless a later attempt may have replaced it", () => {
    const tokens = ["t0", "t1", "t2"];
    const rotated = [write("rotate", "t1"), write("rotate", "t2")];
    assert.deepEqual(lostRotation(rotated, tokens, "t2"), []);
    assert.deepEqual(lostRotation(rotated, tokens, "t1"), [
      "the acknowledged rotation to token 2 is lost: token 1 is in force",
    ]);
    const thenFailed = [...rotated, write("rotate", "", false)];
    assert.deepEqual(lostRotation(thenFailed, tokens, "t2"), []);
    assert.deepEqual(lostRotation(thenFailed, tokens, "t9"), []);
    assert.deepEqual(lostRotation(thenFailed, tokens, "t0"), [
      "the acknowledged rotation to token 2 is lost: token 0 is in force",
    ]);
    assert.deepEqual(lostRotation([write("rotate", "", false)], ["t0"], "t7"), []);
  });
});
