/**
 * Runs a range of random chaos seeds in a worker thread and posts one result per seed.
 * Why a worker: node:test tracks every promise of a test file with async hooks, which made the
 * simulated driver (promise-heavy, like the real one) four times slower; a worker has no hooks,
 * and two workers use both cores.
 * Owns: the worker side of random.test.ts. Must not touch: the fault schedule (chaos.ts).
 */

import { parentPort, workerData } from "node:worker_threads";
import { errorMessage } from "../../lib/shared/errors.ts";
import { runChaos } from "./chaos.ts";

export interface ChaosBatch {
  readonly from: number;
  readonly to: number;
  readonly voters: number;
}

export type SeedResult =
  | {
      readonly seed: number;
      readonly ok: true;
      readonly summary: Awaited<ReturnType<typeof runChaos>>;
    }
  | { readonly seed: number; readonly ok: false; readonly message: string };

const batch = workerData as ChaosBatch;
for (let seed = batch.from; seed <= batch.to; seed++) {
  const replay = `${batch.voters === 5 ? "" : `SIM_VOTERS=${batch.voters} `}SIM_SEED=${seed} node --import tsx --test test/sim/random.test.ts`;
  let result: SeedResult;
  try {
    result = { seed, ok: true, summary: await runChaos(seed, { voters: batch.voters, replay }) };
  } catch (error) {
    result = { seed, ok: false, message: errorMessage(error) };
  }
  parentPort!.postMessage(result);
}
