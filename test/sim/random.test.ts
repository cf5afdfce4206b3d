/**
 * Fault-injected random runs (see chaos.ts): by default 500 seeds of a 5-node cluster, each with
 * invariants checked at every step, a progress check after the faults heal, and a
 * linearizability check of the client history. SIM_SEED=<n> replays one seed;
 * SIM_SEEDS=<count> SIM_SEED_START=<first> runs a soak; SIM_VOTERS=<n> changes the cluster size.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Worker } from "node:worker_threads";
import type { ChaosBatch, SeedResult } from "./chaos-worker.ts";

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

/** Runs seeds from..to in a worker thread and resolves with one result per seed. */
function runBatch(batch: ChaosBatch): Promise<SeedResult[]> {
  return new Promise((resolve, reject) => {
    const results: SeedResult[] = [];
    // tsx must be registered inside the worker before it loads a .ts file.
    const entry = new URL("./chaos-worker.ts", import.meta.url).href;
    const worker = new Worker(
      `import("tsx/esm/api").then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); })`,
      { eval: true, workerData: batch },
    );
    worker.on("message", (result: SeedResult) => results.push(result));
    worker.on("error", reject);
    worker.on("exit", (code) => {
      const expected = batch.to - batch.from + 1;
      if (code === 0 && results.length === expected) resolve(results);
      else
        reject(
          new Error(`chaos worker exited ${code} after ${results.length} of ${expected} seeds`),
        );
    });
  });
}

// Batches run two at a time: one per core.
describe(`random fault-injected runs, ${voters} voters`, { concurrency: 2 }, () => {
  for (let from = first; from < first + count; from += BATCH) {
    const to = Math.min(from + BATCH, first + count) - 1;
    it(`seeds ${from}..${to}`, async (t) => {
      const results = await runBatch({ from, to, voters });
      const failures = results.filter((r) => !r.ok);
      const totals = { operations: 0, completed: 0, ticks: 0, leaderTerms: 0, lostRecords: 0 };
      const faults: Record<string, number> = {};
      for (const result of results) {
        if (!result.ok) continue;
        const { summary } = result;
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
        `${failures.length} of ${to - from + 1} seeds failed (${failures.map((f) => f.seed).join(", ")}); the first:\n${failures[0]?.ok === false ? failures[0].message : ""}`,
      );
      // A run that judged nothing proves nothing: the workload must have completed operations.
      assert.ok(totals.completed > 0, "no client operation completed");
    });
  }
});
