import assert from "node:assert/strict";
import { test } from "node:test";
import type { RaftRestore } from "../../../lib/raft/core.ts";
import { RaftCore } from "../../../lib/raft/core.ts";
import { decodeMembership, encodeMembership } from "../../../lib/raft/membership.ts";
import { recoverAlone, replayCommitted } from "../../../lib/raft/recover.ts";
import type { Entry, StateMachine } from "../../../lib/raft/types.ts";
import { bytes } from "./net.ts";

/** Records what it is asked to apply, as text. */
function recorder(): StateMachine & { applied: string[] } {
  const applied: string[] = [];
  return {
    applied,
    apply: (index, data) => applied.push(`${index}:${new TextDecoder().decode(data)}`),
    snapshot: () => new Uint8Array(),
    restore: () => {},
  };
}

const five = { voters: [1, 2, 3, 4, 5], learners: [] };
const log: Entry[] = [
  { index: 1, term: 1, kind: "membership", data: encodeMembership(five) },
  { index: 2, term: 2, kind: "noop", data: new Uint8Array() },
  { index: 3, term: 2, kind: "command", data: bytes("a") },
  {
    index: 4,
    term: 2,
    kind: "membership",
    data: encodeMembership({ voters: [1, 2, 3, 4], learners: [] }, bytes("remove 5")),
  },
  { index: 5, term: 3, kind: "command", data: bytes("uncommitted") },
];
const restored: RaftRestore = { hardState: { term: 3, vote: 2, commit: 4 }, entries: log };

test("replay applies every committed command, those carried by membership entries included", () => {
  const machine = recorder();
  const membership = replayCommitted(restored, machine);
  assert.deepEqual(machine.applied, ["3:a", "4:remove 5"]);
  assert.deepEqual(membership, { voters: [1, 2, 3, 4], learners: [] });
});

test("recovering keeps the whole log, commits it, and a one-voter configuration after it", () => {
  const recovery = recoverAlone(restored, 1, [bytes("remove 2"), bytes("remove 3")]);
  assert.deepEqual([recovery.kept, recovery.uncommitted], [5, 1]);
  assert.deepEqual(recovery.hardState, { term: 4, vote: 1, commit: 8 });
  assert.deepEqual(
    recovery.entries.map((entry) => [entry.index, entry.term, entry.kind]),
    [
      [6, 4, "membership"],
      [7, 4, "command"],
      [8, 4, "command"],
    ],
  );
  assert.deepEqual(decodeMembership(recovery.entries[0]!.data), { voters: [1], learners: [] });

  // The survivor then leads alone, and its log replays the old entries and the new ones.
  const core = new RaftCore(
    { id: 1, electionTicks: 10, heartbeatTicks: 1, random: () => 0.5 },
    { hardState: recovery.hardState, entries: [...log, ...recovery.entries] },
  );
  core.tick();
  assert.equal(core.status().role, "leader");
  const machine = recorder();
  replayCommitted(
    { hardState: recovery.hardState, entries: [...log, ...recovery.entries] },
    machine,
  );
  assert.deepEqual(machine.applied, [
    "3:a",
    "4:remove 5",
    "5:uncommitted",
    "7:remove 2",
    "8:remove 3",
  ]);
});

test("a survivor rebuilding a log it lost is refused: it may lack committed entries", () => {
  const lost = RaftCore.afterLostLog({
    hardState: restored.hardState,
    snapshot: { index: 5 },
    entries: [],
  });
  assert.throws(
    () => recoverAlone(lost, 1, []),
    /^Error: this node lost its log \(its snapshot could not be restored\) and has not caught up since, so it may lack committed entries: recover the cluster from another survivor$/,
  );
});
