/**
 * Benchmark: start-up of `--help` (empty environment) for today's executable, dist/mill (the
 * pinned Node 24), against the same source built the way Mill was built before (the Node that runs
 * this script, Node 20 here, as runtime and blob writer), interleaved in one run, with each bare
 * runtime's `node -e 0` for scale: wall time, and CPU time, which the machine's load moves far less;
 * then the size of each release file.
 * Usage: npm run release && node --import tsx test/bench/startup.ts [runs, default 21]
 * Owns: its temp dir. Must not touch: dist/.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
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

/**
 * CPU time (user + system) of this process's waited-for children so far, in ms: /proc/self/stat's
 * cutime and cstime, in ticks of 10 ms. Unlike wall time it hardly moves with the machine's load.
 */
function childrenCpuMs(): number {
  const stat = readFileSync("/proc/self/stat", "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[13]) + Number(fields[14])) * 10;
}

/** One run: wall time and CPU time in ms. */
function time(command: string, args: string[]): [wall: number, cpu: number] {
  const cpuBefore = childrenCpuMs();
  const start = process.hrtime.bigint();
  const result = spawnSync(command, args, { env: {}, stdio: "ignore" });
  const wall = Number(process.hrtime.bigint() - start) / 1e6;
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")} exited ${result.status}`);
  return [wall, childrenCpuMs() - cpuBefore];
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
  const cpu = subjects.map(() => 0);
  const loadBefore = loadAverage();
  // Interleaved, so every subject sees the same machine load.
  for (let run = 0; run < runs; run++) {
    subjects.forEach(([, command, args], index) => {
      const [wall, cpuMs] = time(command, [...args]);
      samples[index]!.push(wall);
      cpu[index]! += cpuMs;
    });
  }
  console.log(
    `Start-up with an empty environment, ${runs} interleaved runs each; load average before ${loadBefore}, after ${loadAverage()}.\n`,
  );
  printTable(subjects.map(([label], index) => [label, samples[index]!]));
  console.log("\n| CPU time per start (user + system, mean of the runs) | ms |\n|---|---|");
  subjects.forEach(([label], index) => {
    console.log(`| ${label} | ${(cpu[index]! / runs).toFixed(0)} ms |`);
  });
  const release = join(repo, "dist", "release");
  console.log("\n| file | size |\n|---|---|");
  for (const file of existsSync(release) ? readdirSync(release).sort() : []) {
    console.log(`| dist/release/${file} | ${fileSize(join(release, file))} |`);
  }
  console.log(`| the Node ${process.versions.node} executable above | ${fileSize(previous)} |`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
