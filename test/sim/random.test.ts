/**
 * Fault-injected random runs (see chaos.ts): by default 500 seeds of a 5-node cluster, each with
 * invariants checked at every step, a progress check after the faults heal, and a
 * linearizability check of the client history. SIM_SEED=<n> replays one seed;
 * SIM_SEEDS=<count> SIM_SEED_START=<first> runs a soak; SIM_VOTERS=<n> changes the cluster size.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { type ChaosSummary, runChaos } from "./chaos.ts";

const env = (name: string) => {
  const value = process.env[name];
  if (value === undefined || value === "") return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new Error(`${name} must be a non-negative integer, got "${value}"`);
  return n;
};

const voters = env("SIM_VOTERS") ?? 5;
const only = env("SIM_SEED");
const first = only ?? env("SIM_SEED_START") ?? 1;
const count = only === undefined ? (env("SIM_SEEDS") ?? 500) : 1;
const BATCH = 100;

for (let from = first; from < first + count; from += BATCH) {
  const to = Math.min(from + BATCH, first + count) - 1;
  test(`random fault-injected runs, ${voters} voters: seeds ${from}..${to}`, async (t) => {
    const failures: { seed: number; message: string }[] = [];
    const totals = { operations: 0, completed: 0, ticks: 0, leaderTerms: 0, lostRecords: 0 };
    const faults: Record<string, number> = {};
    for (let seed = from; seed <= to; seed++) {
      let summary: ChaosSummary;
      try {
        const replay = `${voters === 5 ? "" : `SIM_VOTERS=${voters} `}SIM_SEED=${seed} node --import tsx --test test/sim/random.test.ts`;
        summary = await runChaos(seed, { voters, replay });
      } catch (error) {
        failures.push({ seed, message: error instanceof Error ? error.message : String(error) });
        continue;
      }
      totals.operations += summary.operations;
      totals.completed += summary.completed;
      totals.ticks += summary.ticks;
      totals.leaderTerms += summary.leaderTerms;
      totals.lostRecords += summary.lostRecords;
      for (const [fault, n] of Object.entries(summary.faults))
        faults[fault] = (faults[fault] ?? 0) + n;
    }
    t.diagnostic(`${JSON.stringify(totals)} faults ${JSON.stringify(faults)}`);
    assert.ok(
      failures.length === 0,
      `${failures.length} of ${to - from + 1} seeds failed (${failures.map((f) => f.seed).join(", ")}); the first:\n${failures[0]?.message}`,
    );
    // A run that judged nothing proves nothing: the workload must have completed operations.
    assert.ok(totals.completed > 0, "no client operation completed");
  });
}
