/**
 * Runs the real `mill` command line as separate processes on loopback addresses unique to one test
 * file (127.<a>.<b>.1, .2, .3), with private data dirs, and always cleans up the nodes it started.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pollUntil } from "../../lib/shared/poll.ts";
import { processExists } from "../../lib/shared/process.ts";
import { nodeProcessHost } from "../../lib/workloads/process-host.ts";
import { removeTestCgroups } from "../shared/cgroups.ts";

const repo = new URL("../..", import.meta.url).pathname;

export type Runtime = "dist" | "deno";

export interface MillResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Short timings so that NodeDown happens in about a second instead of 15. */
export const FAST_HEALTH = {
  MILL_HEARTBEAT_INTERVAL_MS: "200",
  MILL_HEARTBEAT_TIMEOUT_MS: "1500",
  MILL_WATCHDOG_TICK_MS: "100",
};

export class LocalCluster {
  readonly root = mkdtempSync(join(tmpdir(), "mill-e2e-"));
  private readonly subnet: string;
  private readonly pids = new Set<number>();
  /**
   * Another executable for some nodes (a mixed-version cluster): the commands run for node N
   * (its init or join, `agent`, and `on(N, …)`) use `binaries.get(N)` when set.
   */
  readonly binaries = new Map<number, string>();

  /**
   * `binary` is the executable a "dist" cluster runs (another build, for a side-by-side bench);
   * `noService` is false for a build older than the service hand-over, which has no such flag.
   */
  constructor(
    readonly runtime: Runtime = "dist",
    readonly env: Record<string, string> = FAST_HEALTH,
    readonly binary = join(repo, "dist", "mill"),
    readonly noService = true,
  ) {
    // A /24 of loopback of our own, so test files running in parallel never share an address.
    const a = 1 + Math.floor(Math.random() * 250);
    const b = 1 + Math.floor(Math.random() * 250);
    this.subnet = `127.${a}.${b}`;
  }

  private command(node?: number): string[] {
    if (this.runtime === "deno") {
      return [join(repo, "node_modules", ".bin", "deno"), "run", "-A", join(repo, "main.ts")];
    }
    return [(node === undefined ? undefined : this.binaries.get(node)) ?? this.binary];
  }

  address(node: number): string {
    return `${this.subnet}.${node}`;
  }

  dataDir(node: number): string {
    return join(this.root, `node-${node}`);
  }

  /** Runs one `mill` command to completion, with node `options.node`'s executable if given. */
  run(
    args: string[],
    options: { env?: Record<string, string>; timeoutMs?: number; node?: number } = {},
  ) {
    const [bin, ...prefix] = this.command(options.node);
    return new Promise<MillResult>((resolve) => {
      const child = spawn(bin, [...prefix, ...args], {
        cwd: this.root,
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...this.env, ...options.env },
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (chunk) => {
        stdout += chunk;
      });
      child.stderr.on("data", (chunk) => {
        stderr += chunk;
      });
      const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
      child.on("close", (status) => {
        clearTimeout(timer);
        this.trackPids();
        resolve({ status, stdout, stderr });
      });
    });
  }

  /** `mill init` on node 1 in the background; returns the printed token. */
  async init(extra: string[] = []): Promise<string> {
    const result = await this.run(
      [
        "init",
        "--advertise",
        this.address(1),
        "--name",
        "node-1",
        "--data-dir",
        this.dataDir(1),
        "--mesh",
        "none",
        // A test host must never get a mill.service, even where PID 1 is systemd.
        ...(this.noService ? ["--no-service"] : []),
        ...extra,
      ],
      { node: 1 },
    );
    if (result.status !== 0) throw new Error(`init failed: ${result.stderr}${result.stdout}`);
    const token = /Token: (mill_t_\S+)/.exec(result.stdout)?.[1];
    if (!token) throw new Error(`init printed no token: ${result.stdout}`);
    return token;
  }

  /** `mill init` on node 1, then nodes 2..count join through it; returns the token. */
  async form(count: number): Promise<string> {
    const token = await this.init();
    for (let node = 2; node <= count; node++) {
      const joined = await this.join(node, token);
      if (joined.status !== 0) throw new Error(`join ${node} failed: ${joined.stderr}`);
    }
    return token;
  }

  join(node: number, token: string, via = 1, extra: string[] = []): Promise<MillResult> {
    return this.run(
      [
        "join",
        `${this.address(via)}:4400`,
        "--token",
        token,
        "--advertise",
        this.address(node),
        "--name",
        `node-${node}`,
        "--data-dir",
        this.dataDir(node),
        "--mesh",
        "none",
        // A test host must never get a mill.service, even where PID 1 is systemd.
        ...(this.noService ? ["--no-service"] : []),
        ...extra,
      ],
      { node },
    );
  }

  /** One `mill` command run with `node`'s data dir, so it talks to that node. */
  on(node: number, args: string[]): Promise<MillResult> {
    return this.run(args, { env: { MILL_DATA_DIR: this.dataDir(node) }, node });
  }

  /** `mill ps --json` through `node`: every allocation the cluster remembers; failures throw. */
  async ps(node: number): Promise<PsRow[]> {
    const result = await this.on(node, ["ps", "--json"]);
    if (result.status !== 0) throw new Error(`ps on node ${node} failed: ${result.stderr}`);
    return (JSON.parse(result.stdout) as { allocations: PsRow[] }).allocations;
  }

  /** `mill status --json` run against one node's data dir; any failure throws. */
  async status(node: number): Promise<StatusJson> {
    const answer = await this.statusIfAnswering(node);
    if (!answer) throw new Error(`status on node ${node}: the node is not answering`);
    return answer;
  }

  /** `mill status --json`, or undefined while the node is not answering (see `answeredStatus`). */
  async statusIfAnswering(node: number): Promise<StatusJson | undefined> {
    const result = await this.run(["status", "--json"], {
      env: { MILL_DATA_DIR: this.dataDir(node) },
      node,
    });
    return answeredStatus(`node ${node}`, result.status, result.stdout, result.stderr);
  }

  pid(node: number): number | undefined {
    const file = join(this.dataDir(node), "mill.pid");
    if (!existsSync(file)) return undefined;
    return Number(readFileSync(file, "utf8").trim());
  }

  kill(node: number, signal: NodeJS.Signals = "SIGKILL"): number {
    const pid = this.pid(node);
    if (!pid) throw new Error(`node ${node} has no pid file`);
    process.kill(pid, signal);
    return pid;
  }

  /**
   * Restarts a stopped node from its data dir, in the background, like a service manager would,
   * its output appended to the node's mill.log (where the detached node it replaces wrote).
   */
  agent(node: number): number {
    const [bin, ...prefix] = this.command(node);
    const dataDir = this.dataDir(node);
    const log = existsSync(dataDir) ? openSync(join(dataDir, "mill.log"), "a", 0o600) : "ignore";
    const child = spawn(bin, [...prefix, "agent", "--data-dir", dataDir], {
      cwd: this.root,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...this.env },
      stdio: ["ignore", log, log],
      detached: true,
    });
    if (typeof log === "number") closeSync(log);
    child.unref();
    if (child.pid) this.pids.add(child.pid);
    return child.pid ?? 0;
  }

  private trackPids(): void {
    for (let node = 1; node <= 9; node++) {
      const pid = this.pid(node);
      if (pid) this.pids.add(pid);
    }
  }

  /** Ends every node this cluster started and removes its files and its nodes' cgroups. */
  async cleanup(): Promise<void> {
    this.trackPids();
    for (const pid of this.pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    rmSync(this.root, { recursive: true, force: true });
    // Each node has its own cgroups, named after its data dir.
    await removeTestCgroups(Array.from({ length: 9 }, (_, i) => this.dataDir(i + 1)));
  }
}

/**
 * The workload processes `node`'s pid files record that still run (each in its own process
 * group, outliving its agent). A pid counts only while its kernel start time matches its record,
 * so a reused pid is never taken for a workload.
 */
export function liveWorkloads(cluster: LocalCluster, node: number): number[] {
  const dir = join(cluster.dataDir(node), "allocs");
  if (!existsSync(dir)) return [];
  const pids: number[] = [];
  for (const id of readdirSync(dir)) {
    const file = join(dir, id, "pid");
    if (!existsSync(file)) continue;
    const record = JSON.parse(readFileSync(file, "utf8")) as { pid: number; startTime: string };
    if (nodeProcessHost.startTime(record.pid) === record.startTime) pids.push(record.pid);
  }
  return pids;
}

/** Ends the workload processes of the given nodes, so a test leaves none behind. */
export function killWorkloads(cluster: LocalCluster, nodes: readonly number[]): void {
  for (const pid of nodes.flatMap((node) => liveWorkloads(cluster, node))) {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // ended meanwhile
    }
  }
}

export interface PsRow {
  id: number;
  name: string;
  node: string;
  status: string;
}

export interface StatusJson {
  leader: string;
  term: number;
  /** The protocol the cluster committed ("1.0" until it raised one). */
  protocol: string;
  nodes: {
    name: string;
    id: number;
    status: "joining" | "ready" | "draining" | "down" | "left";
    role: string;
    address: string;
    cpu: { used: number; total: number };
    memory: { used: number; total: number };
    allocs: number;
    lastHeartbeatMs: number | null;
  }[];
}

/**
 * What a `mill status --json` run answered: the parsed view, or undefined when the node is not
 * answering yet: it cannot be reached (starting, killed) or the cluster cannot answer right now
 * (503: no leader, no quorum). Any other failure (a wrong token, a 500, a killed command) throws,
 * so a poll built on it fails at once instead of waiting for the failure to go away.
 */
export function answeredStatus<View = StatusJson>(
  where: string,
  exit: number | null,
  stdout: string,
  stderr: string,
): View | undefined {
  if (exit === 0) return JSON.parse(stdout) as View;
  if (exit === 1 && /cannot reach |\(HTTP 503\)/.test(stderr)) return undefined;
  throw new Error(`status on ${where} failed (exit ${exit}): ${stderr.trim()}`);
}

/**
 * Polls `check` every 100 ms until it returns a value, and fails when `timeoutMs` passes first.
 * Only `undefined` means "not yet": anything `check` throws fails at once. So a condition that
 * takes time is returned as undefined until it holds, while an assertion made inside `check`
 * must hold on every look: a state that is wrong for a while and then right fails the test.
 */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 20_000,
): Promise<T> {
  let value: T | undefined;
  await pollUntil(
    async () => {
      value = await check();
      return value !== undefined;
    },
    timeoutMs,
    () => new Error(`timed out after ${timeoutMs} ms waiting for ${what}`),
    100,
  );
  return value as T;
}

/** Waits until process `pid` has exited. */
export async function exited(what: string, pid: number): Promise<void> {
  await eventually(`${what} to exit`, async () => (processExists(pid) ? undefined : true));
}

/**
 * Restarts `nodes` one at a time: SIGTERM, wait until it exited, `prepare(node)` (another
 * executable, say), `mill agent`, wait until it answers with a leader and every node ready. All
 * the while every node's status is polled, and none may ever show a node down. Each node must
 * run a workload process before, and the same one after (adopted, not restarted); no log may
 * record a NodeDown. Returns how many status answers were looked at.
 */
export async function rollingRestart(
  cluster: LocalCluster,
  nodes: readonly number[],
  prepare: (node: number) => void = () => {},
): Promise<number> {
  const workloadsBefore = nodes.map((node) => liveWorkloads(cluster, node));
  for (const [i, node] of nodes.entries()) {
    assert.ok(workloadsBefore[i]!.length > 0, `node-${node} runs no workload to adopt`);
  }
  let polling = true;
  let looks = 0;
  const watcher = (async () => {
    while (polling) {
      for (const node of nodes) {
        const status = await cluster.statusIfAnswering(node);
        if (!status) continue;
        const down = status.nodes.filter((entry) => entry.status === "down");
        assert.deepEqual(down, [], `node-${node} saw a node down`);
        looks++;
      }
    }
  })();
  try {
    for (const node of nodes) {
      await exited(`node-${node}`, cluster.kill(node, "SIGTERM"));
      prepare(node);
      cluster.agent(node);
      await eventually(`node-${node} back and every node ready`, async () => {
        const status = await cluster.statusIfAnswering(node);
        return status?.leader && status.nodes.every((entry) => entry.status === "ready")
          ? true
          : undefined;
      });
    }
  } finally {
    polling = false;
    await watcher;
  }
  assert.deepEqual(
    nodes.map((node) => liveWorkloads(cluster, node)),
    workloadsBefore,
    "every workload process is the one from before: adopted, not restarted",
  );
  for (const node of nodes) {
    const log = readFileSync(join(cluster.dataDir(node), "mill.log"), "utf8");
    assert.doesNotMatch(log, /node node-\d is down/, `node-${node}'s log`);
  }
  return looks;
}
