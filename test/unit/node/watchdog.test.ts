import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type ApplyResult, type Command, encodeCommand } from "../../../lib/cluster/commands.ts";
import { Watchdog } from "../../../lib/node/watchdog.ts";
import type { RaftStatus } from "../../../lib/raft/types.ts";
import { applied, init, register } from "../cluster/fixtures.ts";

const TIMEOUT = 15_000;

/** Node 1 of three registered at t=2000, leading term 5 unless the test says otherwise. */
function setup() {
  const { fsm } = applied([
    init(),
    register("node-1", 1),
    register("node-2", 2),
    register("node-3", 3),
  ]);
  let now = 2000;
  let status = { role: "leader", term: 5, leader: 1 } as RaftStatus;
  const proposed: Command[] = [];
  const watchdog = new Watchdog({
    self: 1,
    raft: { status: () => status },
    state: () => fsm.state,
    propose: async (command) => {
      proposed.push(command);
      return fsm.apply(100 + proposed.length, encodeCommand(command)) as ApplyResult;
    },
    timeoutMs: TIMEOUT,
    joinExpiryMs: 60_000,
    log: { info: () => {}, warn: () => {} },
    now: () => now,
  });
  return {
    watchdog,
    proposed,
    fsm,
    at: (time: number) => {
      now = time;
    },
    become: (next: Partial<RaftStatus>) => {
      status = { ...status, ...next } as RaftStatus;
    },
  };
}

describe("the leader's watchdog loop", () => {
  test("acts only in the term whose window it opened", async () => {
    const { watchdog, proposed, at, become } = setup();
    at(100_000);
    await watchdog.tick();
    const types = () => proposed.map((command) => command.type);
    assert.deepEqual(types(), [], "Raft says leader, but no window is open for term 5 yet");
    watchdog.becameLeader(5);
    become({ term: 6 });
    at(200_000);
    await watchdog.tick();
    assert.deepEqual(types(), [], "a newer term's window is not open");
    become({ term: 5 });
    await watchdog.tick();
    assert.deepEqual(types(), ["NodeDown", "NodeDown"]);
  });

  test("does nothing as a follower, and marks a node down only after a full silent window", async () => {
    const { watchdog, proposed, at, become, fsm } = setup();
    at(10_000);
    watchdog.becameLeader(5);
    watchdog.heartbeats.heard(2, 10_000);
    at(10_000 + TIMEOUT + 1);
    become({ role: "follower" });
    await watchdog.tick();
    assert.equal(proposed.length, 0);
    become({ role: "leader" });
    watchdog.heartbeats.heard(3, 10_000 + TIMEOUT);
    await watchdog.tick();
    assert.deepEqual(proposed, [{ type: "NodeDown", id: 2, at: 10_000 + TIMEOUT + 1 }]);
    assert.equal(fsm.state.nodes.get(2)?.status, "down");
  });

  test("reports heartbeat ages: 0 for itself, undefined for a node it has not heard", () => {
    const { watchdog, at } = setup();
    at(50_000);
    watchdog.becameLeader(5);
    watchdog.heartbeats.heard(2, 48_000);
    assert.equal(watchdog.age(1), 0);
    assert.equal(watchdog.age(2), 2000);
    assert.equal(watchdog.age(3), undefined);
  });
});
