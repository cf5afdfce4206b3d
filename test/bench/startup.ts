/**
 * Benchmark: start-up of `--help` (empty environment) for today's executable, dist/mill (the
 * pinned Node 24), against the same source built the way Mill was built before (the Node that runs
 * this script, Node 20 here, as runtime and blob writer), interleaved in one run, with each bare
 * runtime's `node -e 0` for scale; then the size of each release file.
 * Usage: npm run release && node --import tsx test/bench/startup.ts [runs, default 21]
 * Owns: its temp dir. Must not touch: dist/.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileSize } from "../../build/build.ts";
import { buildExecutable, targetInputs } from "../../build/executable.ts";
import { hostArch } from "../../build/host-packages.ts";
import { loadAverage, printTable } from "./formation.ts";

const repo = new URL("../..", import.meta.url).pathname;
const runs = Number(process.argv[2] ?? 21);
const host = hostArch();
const work = mkdtempSync(join(tmpdir(), "mill-bench-startup-"));

function time(command: string, args: string[]): number {
  const start = process.hrtime.bigint();
  const result = spawnSync(command, args, { env: {}, stdio: "ignore" });
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")} exited ${result.status}`);
  return Number(process.hrtime.bigint() - start) / 1e6;
}

try {
  const current = join(repo, "dist", "mill");
  if (!existsSync(current)) throw new Error("no dist/mill: run `npm run release` first");
  const previous = join(work, `mill-node${process.versions.node.split(".")[0]}`);
  await buildExecutable({
    target: host,
    host,
    out: previous,
    runtimeOverride: { node: process.execPath, version: process.versions.node },
  });
  const pinnedNode = targetInputs(host).node;
  const subjects = [
    ["`dist/mill --help` (Node 24.22.3 inside)", current, ["--help"]],
    [
      `the same source as a Node ${process.versions.node} executable, \`--help\``,
      previous,
      ["--help"],
    ],
    ["bare Node 24.22.3 `node -e 0`, for scale", pinnedNode, ["-e", "0"]],
    [`bare Node ${process.versions.node} \`node -e 0\`, for scale`, process.execPath, ["-e", "0"]],
  ] as const;
  const samples = subjects.map(() => [] as number[]);
  const loadBefore = loadAverage();
  // Interleaved, so every subject sees the same machine load.
  for (let run = 0; run < runs; run++) {
    subjects.forEach(([, command, args], index) => {
      samples[index]!.push(time(command, [...args]));
    });
  }
  console.log(
    `Start-up with an empty environment, ${runs} interleaved runs each; load average before ${loadBefore}, after ${loadAverage()}.\n`,
  );
  printTable(subjects.map(([label], index) => [label, samples[index]!]));
  const release = join(repo, "dist", "release");
  console.log("\n| file | size |\n|---|---|");
  for (const file of existsSync(release) ? readdirSync(release).sort() : []) {
    console.log(`| dist/release/${file} | ${fileSize(join(release, file))} |`);
  }
  console.log(`| the Node ${process.versions.node} executable above | ${fileSize(previous)} |`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
