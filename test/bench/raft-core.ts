/**
 * Benchmark of the pure Raft core alone (no disk, no network): three cores in one process,
 * 64 proposals per round, every Ready handed over at once. Measures how many entries per second
 * the core itself can commit, to show it is not the bottleneck of a real node.
 * Run: node --import tsx test/bench/raft-core.ts [rounds]
 */
import { RaftCore } from "../../lib/raft/core.ts";
import { encodeMembership } from "../../lib/raft/membership.ts";
import { seededRandom } from "../../lib/raft/rng.ts";
import type { Message } from "../../lib/raft/types.ts";

const rounds = Number(process.argv[2] ?? 5000);
const batch = 64;
const ids = [1, 2, 3];
const cores = new Map(
  ids.map((id) => [
    id,
    new RaftCore(
      { id, electionTicks: 10, heartbeatTicks: 1, random: seededRandom(id) },
      {
        hardState: { term: 1, vote: 0, commit: 1 },
        entries: [
          {
            index: 1,
            term: 1,
            kind: "membership",
            data: encodeMembership({ voters: ids, learners: [] }),
          },
        ],
      },
    ),
  ]),
);

let applied = 0;
function pump(): void {
  for (;;) {
    const messages: Message[] = [];
    for (const core of cores.values()) {
      if (!core.hasReady()) continue;
      const rd = core.ready();
      if (core.id === 1) applied += rd.committed.length;
      messages.push(...rd.messages);
      core.advance(rd);
    }
    if (messages.length === 0) return;
    for (const m of messages) cores.get(m.to)!.step(m);
  }
}

const leader = cores.get(1)!;
while (leader.status().role !== "leader") {
  leader.tick();
  pump();
}
const payload = new Uint8Array(100);
const start = performance.now();
applied = 0;
for (let r = 0; r < rounds; r++) {
  for (let i = 0; i < batch; i++) leader.propose(payload);
  pump();
  if (r % 100 === 0) leader.compact(leader.status().applied, payload);
}
const seconds = (performance.now() - start) / 1000;
console.log(
  `${rounds * batch} entries in ${seconds.toFixed(2)} s: ${Math.round(applied / seconds)} committed entries/s (core only, 3 nodes, batch ${batch})`,
);
