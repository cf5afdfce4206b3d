/**
 * A Mill cluster of the real executable in network namespaces (test/netns/harness.ts), and the
 * faults done to it: kill -9 and restart, SIGSTOP/SIGCONT, nftables drops on the underlay inside
 * the namespaces. Also watches every node's mill.log and stamps each line when it appears, so
 * leader changes and restarts are timed on the same clock as the faults, and reads the Raft log
 * each stopped node leaves on disk.
 * Owns: the hosts it creates, the processes and nft tables in them, its data dirs. Must not
 * touch: anything outside its namespaces (nft runs only inside them), other processes.
 */

import type { ChildProcess } from "node:child_process";
import {
  closeSync,
  existsSync,
  fstatSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
} from "node:fs";
import { readdir, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DebugStateResponse } from "../../../lib/api/wire.ts";
import type { NodesJson, StatusJson } from "../../../lib/cluster/views.ts";
import { parseToken } from "../../../lib/identity/token.ts";
import { raftDir } from "../../../lib/node/config.ts";
import { openStorage } from "../../../lib/raft/storage/storage.ts";
import { pollUntil } from "../../../lib/shared/poll.ts";
import { workRoot } from "../../../lib/workloads/allocation-dirs.ts";
import { answeredStatus, eventually, FAST_HEALTH } from "../../e2e/harness.ts";
import { removeTestCgroups } from "../../shared/cgroups.ts";
import { createHosts, type ExecResult, type Host, type Hosts } from "../harness.ts";
import type { NodeView, PsEntry, StoredLog } from "./check.ts";
import type { Cut, Match } from "./schedule.ts";

const repo = new URL("../../..", import.meta.url).pathname;
/** FAULT_MILL runs another build (a candidate fix) through the same schedules. */
const mill = process.env.FAULT_MILL ?? join(repo, "dist", "mill");
const WIREGUARD_PORT = 4400;
const NFT_TABLE = "millfault";

export interface LogLine {
  readonly node: string;
  readonly at: number;
  readonly text: string;
}

export class FaultCluster {
  readonly root = mkdtempSync(join(tmpdir(), "mill-faults-"));
  /** Wall-clock ms when the cluster was created: the zero of the run's clock. */
  readonly startedAt = Date.now();
  readonly lines: LogLine[] = [];
  readonly #paused = new Set<number>();
  readonly #cutHosts = new Set<string>();
  readonly #logOffsets = new Map<string, { ino: number; offset: number }>();
  #cleared = 0;
  readonly #tail: ReturnType<typeof setInterval>;

  private constructor(
    readonly net: Hosts,
    readonly env: Record<string, string>,
  ) {
    this.#tail = setInterval(() => this.#readLogs(), 100);
  }

  /** Milliseconds since the cluster was created: the clock of every record of the run. */
  now(): number {
    return Date.now() - this.startedAt;
  }

  /** Hosts named node-1 … node-N; the first `initial` form the cluster, the others can join. */
  static async create(hosts: number, env: Record<string, string>): Promise<FaultCluster> {
    return new FaultCluster(await createHosts(hosts), { ...FAST_HEALTH, ...env });
  }

  get names(): string[] {
    return this.net.hosts.map((_, i) => `node-${i + 1}`);
  }

  host(name: string): Host {
    const host = this.net.hosts[Number(name.slice("node-".length)) - 1];
    if (!host) throw new Error(`no host for ${name}`);
    return host;
  }

  dataDir(name: string): string {
    return join(this.root, name);
  }

  /** One `mill` command inside the node's namespace, with the health timings of the run. */
  mill(name: string, args: readonly string[], timeoutMs = 30_000): Promise<ExecResult> {
    const env = Object.entries(this.env).map(([key, value]) => `${key}=${value}`);
    return this.host(name).exec("env", ["-i", `PATH=${process.env.PATH}`, ...env, mill, ...args], {
      timeoutMs,
    });
  }

  #nodeArgs(name: string): string[] {
    return [
      "--advertise",
      this.host(name).underlay,
      "--name",
      name,
      "--data-dir",
      this.dataDir(name),
      "--mesh-interface",
      this.iface(name),
      "--no-service",
    ];
  }

  /** `mill init`; resolves with the printed token. */
  async init(name: string): Promise<string> {
    const result = await this.mill(name, ["init", ...this.#nodeArgs(name)], 60_000);
    const token = /Token: (mill_t_\S+)/.exec(result.stdout)?.[1];
    if (result.code !== 0 || !token) throw new Error(`init on ${name} failed: ${result.stderr}`);
    return token;
  }

  /** The token a node saved in its data dir (it follows rotations there). */
  token(name: string): string {
    return readFileSync(join(this.dataDir(name), "token"), "utf8").trim();
  }

  /** `mill init` on the first of `names`, each other one joined through it, all seen ready there. */
  async form(names: readonly string[]): Promise<void> {
    const [first, ...rest] = names;
    await this.init(first);
    for (const name of rest) {
      const joined = await this.joinOnce(name, first, 60_000);
      if (joined.code !== 0) throw new Error(`join ${name} failed: ${joined.stderr}`);
    }
    await eventually(`${names.length} ready nodes`, async () => {
      const seen = await this.statusIfAnswering(first);
      return seen?.nodes.length === names.length && seen.nodes.every((n) => n.status === "ready")
        ? true
        : undefined;
    });
  }

  /** One `mill join` attempt through `via`, with the token `via` holds, as an operator types it. */
  joinOnce(name: string, via: string, timeoutMs: number): Promise<ExecResult> {
    return this.mill(
      name,
      [
        "join",
        `${this.host(via).underlay}:4400`,
        "--token",
        this.token(via),
        ...this.#nodeArgs(name),
      ],
      timeoutMs,
    );
  }

  async #read<T>(name: string, command: "status" | "nodes", timeoutMs: number): Promise<T> {
    const result = await this.mill(
      name,
      [command, "--json", "--data-dir", this.dataDir(name)],
      timeoutMs,
    );
    if (result.code !== 0) {
      // A command killed at its deadline has no stderr of its own, only execFile's "Command failed".
      const reason = result.stderr.startsWith("Command failed")
        ? `no answer within ${timeoutMs} ms`
        : result.stderr.trim().split("\n").at(-1);
      throw new Error(`${command} on ${name}: ${reason}`);
    }
    return JSON.parse(result.stdout) as T;
  }

  status(name: string, timeoutMs = 10_000): Promise<StatusJson> {
    return this.#read<StatusJson>(name, "status", timeoutMs);
  }

  /** `mill status --json`, or undefined while the node is not answering (see `answeredStatus`). */
  async statusIfAnswering(name: string): Promise<StatusJson | undefined> {
    const result = await this.mill(name, ["status", "--json", "--data-dir", this.dataDir(name)]);
    return answeredStatus<StatusJson>(name, result.code, result.stdout, result.stderr);
  }

  /** `mill nodes --json`; the deadline outlasts the node's own commit timeout, so its reason shows. */
  async view(name: string): Promise<NodeView> {
    return { node: name, nodes: await this.#read<NodesJson>(name, "nodes", 15_000) };
  }

  /**
   * GET /v1/debug/state with curl inside the namespace, with `token` (default: the node's own),
   * in a header read from stdin, so never on a command line. Only the node's own TLS identity
   * answers there, so -k is enough.
   */
  #debugRequest(name: string, token: string, curlArgs: readonly string[]): Promise<ExecResult> {
    const header = `Authorization: Bearer ${parseToken(token).secret}\n`;
    const url = `https://${this.host(name).underlay}:4400/v1/debug/state`;
    return this.host(name).exec(
      "curl",
      ["-sSk", "--max-time", "10", ...curlArgs, "-H", "@-", url],
      {
        input: header,
        timeoutMs: 15_000,
      },
    );
  }

  async debugState(name: string): Promise<DebugStateResponse> {
    const result = await this.#debugRequest(name, this.token(name), ["--fail-with-body"]);
    if (result.code !== 0)
      throw new Error(`debug state of ${name}: ${result.stderr.trim()} ${result.stdout}`);
    return JSON.parse(result.stdout) as DebugStateResponse;
  }

  /**
   * Whether `name` accepts `token` (200) or refuses it (401, or 429 once this source has failed
   * often: the checker asks with old tokens again and again, and a valid credential is never
   * answered 429, see lib/api/guard.ts); any other answer throws.
   */
  async accepts(name: string, token: string): Promise<boolean> {
    const result = await this.#debugRequest(name, token, ["-o", "/dev/null", "-w", "%{http_code}"]);
    if (result.stdout === "200") return true;
    if (result.stdout === "401" || result.stdout === "429") return false;
    throw new Error(`${name} answered ${result.stdout || result.stderr.trim()} to a token check`);
  }

  /** The rows of `mill ps --json` as `name` answers it (after a read barrier). */
  async allocations(name: string): Promise<PsEntry[]> {
    const result = await this.mill(
      name,
      ["ps", "--json", "--data-dir", this.dataDir(name)],
      15_000,
    );
    if (result.code !== 0) throw new Error(`ps on ${name}: ${result.stderr.trim()}`);
    return (JSON.parse(result.stdout) as { allocations: PsEntry[] }).allocations;
  }

  /** The node's WireGuard interface: unique on the host, as the UAPI socket folder needs. */
  iface(name: string): string {
    return `mf${this.net.runId}${this.host(name).index}`;
  }

  /** The pid of the node's wireguard-go, as its data dir records it; undefined without one. */
  wireguardPid(name: string): number | undefined {
    const path = join(this.dataDir(name), "wireguard.pid");
    return existsSync(path) ? Number(readFileSync(path, "utf8").trim()) : undefined;
  }

  /** Whether the node's mesh interface exists in its namespace. */
  async hasInterface(name: string): Promise<boolean> {
    return (await this.host(name).exec("ip", ["link", "show", this.iface(name)])).code === 0;
  }

  /**
   * The host is destroyed, as a VM that dies for good: every process in its namespace is
   * killed (agent, wireguard-go, workloads) and its interface, UAPI socket and files are gone.
   */
  async destroy(name: string): Promise<void> {
    const host = this.host(name);
    const pids = await host.exec("ip", ["netns", "pids", host.name]);
    for (const pid of pids.stdout.split("\n").filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // It exited between the listing and the kill.
      }
    }
    await host.exec("ip", ["link", "del", this.iface(name)]);
    await this.clearHost(name);
  }

  /**
   * A fresh host where a node was: no data dir, no workload dirs, no stale UAPI socket. Its
   * mill.log, if any, is kept beside the data dirs (`NAME-gone-N.log`) for a failure report.
   */
  async clearHost(name: string): Promise<void> {
    const log = join(this.dataDir(name), "mill.log");
    if (existsSync(log)) {
      this.#readLogs();
      await rename(log, join(this.root, `${name}-gone-${this.#cleared++}.log`));
    }
    await rm(join("/var/run/wireguard", `${this.iface(name)}.sock`), { force: true });
    await rm(workRoot(this.dataDir(name)), { recursive: true, force: true });
    await rm(this.dataDir(name), { recursive: true, force: true });
  }

  /**
   * Ends every node's agent (resumed first if paused), so that their Raft logs stop changing;
   * wireguard-go and workloads stay until cleanup.
   */
  async stopNodes(): Promise<void> {
    for (const name of this.names) {
      if (!existsSync(join(this.dataDir(name), "mill.pid"))) continue;
      const pid = this.pid(name);
      try {
        process.kill(pid, "SIGCONT");
        process.kill(pid, "SIGKILL");
      } catch {
        continue; // It was not running.
      }
      this.#paused.delete(pid);
      await pollUntil(
        () => !running(pid),
        10_000,
        () => new Error(`${name} (pid ${pid}) still runs 10 s after SIGKILL`),
        20,
      );
    }
  }

  /** The Raft log a stopped node left on disk: its recorded commit index and its entries. */
  async storedLog(name: string): Promise<StoredLog> {
    const storage = await openStorage(raftDir(this.dataDir(name)));
    try {
      const { hardState, entries } = storage.restore();
      return { commit: hardState.commit, entries };
    } finally {
      await storage.close();
    }
  }

  pid(name: string): number {
    const pid = Number(readFileSync(join(this.dataDir(name), "mill.pid"), "utf8").trim());
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`${name} has no pid file`);
    return pid;
  }

  /** Whether process `pid` still runs (not a zombie). */
  alive(pid: number): boolean {
    return running(pid);
  }

  kill(name: string): void {
    process.kill(this.pid(name), "SIGKILL");
  }

  pause(name: string): void {
    const pid = this.pid(name);
    process.kill(pid, "SIGSTOP");
    this.#paused.add(pid);
  }

  resume(name: string): void {
    const pid = this.pid(name);
    process.kill(pid, "SIGCONT");
    this.#paused.delete(pid);
  }

  /**
   * `mill agent --data-dir` in the node's namespace, output appended to its mill.log; the child
   * tells how the agent exited.
   */
  restart(name: string): ChildProcess {
    const log = openSync(join(this.dataDir(name), "mill.log"), "a", 0o600);
    const env = Object.entries(this.env).map(([key, value]) => `${key}=${value}`);
    const child = this.host(name).spawn(
      "env",
      ["-i", `PATH=${process.env.PATH}`, ...env, mill, "agent", "--data-dir", this.dataDir(name)],
      { stdio: ["ignore", log, log] },
    );
    closeSync(log);
    child.unref();
    return child;
  }

  /** Drops, in each receiving namespace, what it gets from the cut senders (all or WireGuard only). */
  async cut(cuts: readonly Cut[], match: Match): Promise<void> {
    const byReceiver = new Map<string, string[]>();
    for (const { from, to } of cuts) {
      const rule =
        match === "all"
          ? `ip saddr ${this.host(from).underlay} drop`
          : `ip saddr ${this.host(from).underlay} udp sport ${WIREGUARD_PORT} drop`;
      byReceiver.set(to, [...(byReceiver.get(to) ?? []), rule]);
    }
    for (const [to, rules] of byReceiver) {
      const ruleset = [
        `table inet ${NFT_TABLE} {`,
        "  chain input {",
        "    type filter hook input priority -10; policy accept;",
        ...rules.map((rule) => `    ${rule}`),
        "  }",
        "}",
        "",
      ].join("\n");
      this.#cutHosts.add(to);
      await this.host(to).run("nft", ["-f", "-"], { input: ruleset });
    }
  }

  async heal(): Promise<void> {
    for (const name of this.#cutHosts)
      await this.host(name).run("nft", ["delete", "table", "inet", NFT_TABLE]);
    this.#cutHosts.clear();
  }

  /** The first log line of `name` matching `pattern` seen at or after `since`. */
  firstLine(name: string, pattern: RegExp, since: number): LogLine | undefined {
    return this.lines.find(
      (line) => line.node === name && line.at >= since && pattern.test(line.text),
    );
  }

  /** The last `count` log lines of every node, for a failure report. */
  logTails(count: number): string {
    return this.names
      .filter((name) => existsSync(join(this.dataDir(name), "mill.log")))
      .map((name) => {
        const own = this.lines.filter((line) => line.node === name).slice(-count);
        return [
          `--- ${name} mill.log (last ${own.length} lines, ms since start)`,
          ...own.map((l) => `${l.at} ${l.text}`),
        ].join("\n");
      })
      .join("\n");
  }

  #readLogs(): void {
    for (const name of this.names) {
      const path = join(this.dataDir(name), "mill.log");
      if (!existsSync(path)) continue;
      const fd = openSync(path, "r");
      // A name that left and joined again starts a new mill.log in a fresh data dir.
      const { ino } = fstatSync(fd);
      const seen = this.#logOffsets.get(name);
      const offset = seen?.ino === ino ? seen.offset : 0;
      try {
        const buffer = Buffer.alloc(1 << 16);
        let read = offset;
        let text = "";
        for (;;) {
          const bytes = readSync(fd, buffer, 0, buffer.length, read);
          if (bytes === 0) break;
          text += buffer.subarray(0, bytes).toString("utf8");
          read += bytes;
        }
        const complete = text.lastIndexOf("\n") + 1;
        this.#logOffsets.set(name, {
          ino,
          offset: offset + Buffer.byteLength(text.slice(0, complete)),
        });
        const at = this.now();
        for (const line of text.slice(0, complete).split("\n").filter(Boolean))
          this.lines.push({ node: name, at, text: line });
      } finally {
        closeSync(fd);
      }
    }
  }

  /** Resumes and kills stopped processes, deletes the namespaces (and their nft tables), the files. */
  async cleanup(keepFiles: boolean): Promise<void> {
    clearInterval(this.#tail);
    this.#readLogs();
    for (const pid of this.#paused) {
      try {
        process.kill(pid, "SIGCONT");
        process.kill(pid, "SIGKILL");
      } catch {
        // It already exited.
      }
    }
    this.#paused.clear();
    await this.net.cleanup();
    // A killed wireguard-go leaves its UAPI socket behind; these names carry this run's id.
    const sockets = await readdir("/var/run/wireguard").catch(() => [] as string[]);
    for (const socket of sockets.filter((file) => file.startsWith(`mf${this.net.runId}`)))
      await rm(join("/var/run/wireguard", socket), { force: true });
    await removeTestCgroups(this.names.map((name) => this.dataDir(name)));
    if (!keepFiles) rmSync(this.root, { recursive: true, force: true });
  }
}

/** The process exists and is not a zombie. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return false;
  }
}
