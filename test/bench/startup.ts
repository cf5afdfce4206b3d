/**
 * Size of dist/mill and the start-up time of `dist/mill --help` (empty environment), beside bare
 * `node -e 0` in the same run. Run: node --import tsx test/bench/startup.ts [runs]
 */
import { spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { join } from "node:path";

const repo = new URL("../..", import.meta.url).pathname;
const mill = join(repo, "dist", "mill");
const runs = Number(process.argv[2] ?? 21);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function time(command: string, args: string[]): number {
  const start = process.hrtime.bigint();
  const result = spawnSync(command, args, { env: {}, stdio: "ignore" });
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")} exited ${result.status}`);
  return Number(process.hrtime.bigint() - start) / 1e6;
}

const samples = { mill: [] as number[], node: [] as number[] };
// Interleaved, so both see the same machine load.
for (let i = 0; i < runs; i++) {
  samples.mill.push(time(mill, ["--help"]));
  samples.node.push(time(process.execPath, ["-e", "0"]));
}
const size = statSync(mill).size / 2 ** 20;
console.log(`| what | median (${runs} runs) |`);
console.log("|---|---|");
console.log(`| dist/mill size | ${size.toFixed(1)} MiB |`);
console.log(`| env -i dist/mill --help | ${median(samples.mill).toFixed(0)} ms |`);
console.log(`| node -e 0 (for scale) | ${median(samples.node).toFixed(0)} ms |`);
