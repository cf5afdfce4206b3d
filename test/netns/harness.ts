/**
 * Test hosts in network namespaces: n namespaces, each with an `eth0` on one private bridge
 * (the bridge lives in its own hub namespace, so the host's own network is never touched).
 * Owns: the namespaces it names (run id inside the name) and the processes started in them.
 * Must not touch: any other namespace, interface or process. Root only.
 */
import { type ChildProcess, execFile, type SpawnOptions, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import process from "node:process";

export const notRootReason =
  process.getuid?.() === 0
    ? false
    : "network-namespace tests need root (run them as root to include them)";

export interface ExecResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface Host {
  /** The namespace name. */
  readonly name: string;
  readonly index: number;
  /** This host's address on the shared test subnet, e.g. 192.168.57.1. */
  readonly underlay: string;
  /** Runs a command inside the namespace; resolves with its exit code, never rejects on non-zero. */
  exec(
    command: string,
    args?: readonly string[],
    options?: { input?: string; timeoutMs?: number },
  ): Promise<ExecResult>;
  /** Like exec, but rejects with the command's stderr when it exits non-zero. */
  run(
    command: string,
    args?: readonly string[],
    options?: { input?: string; timeoutMs?: number },
  ): Promise<string>;
  /** Starts a long-running command inside the namespace; cleanup() kills it. */
  spawn(command: string, args?: readonly string[], options?: SpawnOptions): ChildProcess;
}

export interface Hosts {
  /** Six hex digits unique to this run; put it in every host-wide name (UAPI sockets, files). */
  readonly runId: string;
  readonly hosts: readonly Host[];
  /** The private test subnet, e.g. 192.168.57.0/24; it exists only inside the namespaces. */
  readonly subnet: string;
  /** Kills every process in the namespaces and deletes them; safe to call twice. */
  cleanup(): Promise<void>;
}

function execHost(
  command: string,
  args: readonly string[],
  options: { input?: string; timeoutMs?: number } = {},
): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = execFile(
      command,
      [...args],
      { timeout: options.timeoutMs ?? 20_000, maxBuffer: 16 << 20 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
        resolve({
          code,
          stdout,
          stderr: stderr || (error && code !== 0 && !stderr ? error.message : ""),
        });
      },
    );
    if (options.input !== undefined) child.stdin!.end(options.input);
  });
}

async function ip(...args: string[]): Promise<void> {
  const result = await execHost("ip", args);
  if (result.code !== 0) throw new Error(`ip ${args.join(" ")}: ${result.stderr.trim()}`);
}

export async function createHosts(count: number): Promise<Hosts> {
  if (!Number.isInteger(count) || count < 1 || count > 200)
    throw new Error(`createHosts needs 1-200 hosts, got ${count}`);
  const runId = randomBytes(3).toString("hex");
  const subnetOctet = 1 + (randomBytes(1)[0]! % 254);
  const hub = `mt${runId}hub`;
  const names = Array.from(
    { length: count },
    (_, i) => `mt${runId}${i < 26 ? String.fromCharCode(97 + i) : i}`,
  );
  const children = new Set<ChildProcess>();
  const created: string[] = [];
  let cleaned = false;

  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    for (const child of children)
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    for (const name of created) {
      const pids = await execHost("ip", ["netns", "pids", name]);
      for (const pid of pids.stdout.split("\n").filter(Boolean)) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          // It exited between the listing and the kill.
        }
      }
    }
    for (const name of created) await execHost("ip", ["netns", "del", name]);
  };

  try {
    for (const name of [hub, ...names]) {
      await ip("netns", "add", name);
      created.push(name);
      await ip("-n", name, "link", "set", "lo", "up");
    }
    await ip("-n", hub, "link", "add", "br0", "type", "bridge");
    await ip("-n", hub, "link", "set", "br0", "up");
    const hosts = names.map((name, index): Host => {
      const exec: Host["exec"] = (command, args = [], options) =>
        execHost("ip", ["netns", "exec", name, command, ...args], options);
      return {
        name,
        index,
        underlay: `192.168.${subnetOctet}.${index + 1}`,
        exec,
        async run(command, args = [], options) {
          const result = await exec(command, args, options);
          if (result.code !== 0) {
            throw new Error(
              `${command} ${args.join(" ")} in ${name} exited ${result.code}: ${result.stderr.trim()}`,
            );
          }
          return result.stdout;
        },
        spawn(command, args = [], options = {}) {
          const child = spawn("ip", ["netns", "exec", name, command, ...args], {
            stdio: "pipe",
            ...options,
          });
          children.add(child);
          child.once("exit", () => children.delete(child));
          return child;
        },
      };
    });
    for (const host of hosts) {
      const port = `p${host.index}`;
      await ip(
        "link",
        "add",
        "eth0",
        "netns",
        host.name,
        "type",
        "veth",
        "peer",
        "name",
        port,
        "netns",
        hub,
      );
      await ip("-n", hub, "link", "set", port, "master", "br0", "up");
      await ip("-n", host.name, "address", "add", `${host.underlay}/24`, "dev", "eth0");
      await ip("-n", host.name, "link", "set", "eth0", "up");
    }
    return { runId, hosts, subnet: `192.168.${subnetOctet}.0/24`, cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
