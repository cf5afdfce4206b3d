/**
 * The test side of ./agent.ts: starts one agent in a namespace and speaks its JSON lines; and the
 * wireguard-go binaries the namespace tests and the mesh benchmark run.
 * Owns: the agent processes it starts (through the host, whose cleanup kills them).
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { hostArch } from "../../../build/host-packages.ts";
import { findPin, readManifest, vendoredFile } from "../../../build/vendor.ts";
import { generateKeyPair, type KeyPair } from "../../../lib/mesh/keys.ts";
import { buildNetifHelper } from "../../../lib/mesh/netif-build.ts";
import type { PeerConfig } from "../../../lib/mesh/uapi.ts";
import { createHosts, type Host, type Hosts } from "../harness.ts";

const AGENT = fileURLToPath(new URL("./agent.ts", import.meta.url));
const REPO = fileURLToPath(new URL("../../../", import.meta.url));

/** The wireguard-go Mill embeds for this host (vendor/manifest.json), from the verified cache. */
export const pinnedWireguard = (): string =>
  vendoredFile(findPin(readManifest(), "wireguard-go", hostArch()));

/** The system's wireguard-go, the one Mill embedded before the pin (Debian 12's 0.0.20220316). */
export const SYSTEM_WIREGUARD = "/usr/bin/wireguard-go";

/** What `wireguard-go --version` reports, e.g. "v0.0.20220316"; undefined when it cannot run. */
export function wireguardVersion(binary: string): string | undefined {
  if (!existsSync(binary)) return undefined;
  try {
    return /v\d+\.\d+\.\d+/.exec(execFileSync(binary, ["--version"], { encoding: "utf8" }))?.[0];
  } catch {
    return undefined;
  }
}

/**
 * One agent process in a namespace, spoken to in JSON lines. Once it exits, whatever still waits
 * for a message fails naming its exit, so an agent that cannot start fails its test at once
 * instead of holding it until the run's timeout.
 */
export class Agent {
  private readonly waiting: {
    accept: (message: Record<string, unknown>) => boolean;
    fail: (error: Error) => void;
  }[] = [];
  private readonly backlog: Record<string, unknown>[] = [];
  private exit: Error | undefined;

  constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const message = JSON.parse(line) as Record<string, unknown>;
      const taker = this.waiting.findIndex((waiter) => waiter.accept(message));
      if (taker >= 0) this.waiting.splice(taker, 1);
      else this.backlog.push(message);
    });
    child.on("close", (code, signal) => {
      this.exit = new Error(
        `the agent process exited (${signal ?? `code ${code}`}) before it answered; its stderr is above`,
      );
      for (const waiter of this.waiting.splice(0)) waiter.fail(this.exit);
    });
  }

  /** The next message that matches, from the backlog or as it arrives. */
  next(match: (message: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    const found = this.backlog.findIndex(match);
    if (found >= 0) return Promise.resolve(this.backlog.splice(found, 1)[0]!);
    if (this.exit) return Promise.reject(this.exit);
    return new Promise((resolve, reject) =>
      this.waiting.push({
        accept: (message) => {
          if (!match(message)) return false;
          resolve(message);
          return true;
        },
        fail: reject,
      }),
    );
  }

  /**
   * A message that has arrived and was not taken, or undefined. The agent writes every event of its
   * start-up before "ready", so once "ready" is taken this tells whether one was sent.
   */
  received(
    match: (message: Record<string, unknown>) => boolean,
  ): Record<string, unknown> | undefined {
    return this.backlog.find(match);
  }

  async request(command: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.child.stdin!.write(`${JSON.stringify(command)}\n`);
    const reply = await this.next((message) => message.op === command.op);
    assert.equal(reply.error, undefined, `${String(command.op)} failed: ${String(reply.error)}`);
    return reply;
  }
}

export function startAgent(
  host: Host,
  options: Record<string, unknown>,
  wrapper: string[] = [],
): Agent {
  const [command, ...args] = [...wrapper, process.execPath, "--import", "tsx", AGENT];
  const child = host.spawn(command!, args, { cwd: REPO, stdio: ["pipe", "pipe", "inherit"] });
  child.stdin!.write(`${JSON.stringify(options)}\n`);
  return new Agent(child);
}

export const WG_PORT = 51820;

/** Two namespaces, each with an agent running startMesh on `wgBinary`; peers not yet applied. */
export interface MeshPair {
  readonly hosts: Hosts;
  readonly agents: readonly Agent[];
  readonly keys: readonly KeyPair[];
  meshIp(index: number): string;
  ifaceOf(index: number): string;
  peerOf(index: number): PeerConfig;
  /** Each agent runs the other as its peer. */
  applyEachOther(): Promise<void>;
  /** Stops the agents (mesh.stop()), then deletes the namespaces and the helper. */
  stop(): Promise<void>;
}

export async function startMeshPair(wgBinary: string, ifacePrefix: string): Promise<MeshPair> {
  const helperDir = await mkdtemp(join(tmpdir(), "mill-netif-"));
  const hosts = await createHosts(2);
  const agents: Agent[] = [];
  const keys = [generateKeyPair(), generateKeyPair()];
  const meshIp = (index: number) => `10.99.0.${index + 1}`;
  const ifaceOf = (index: number) => `${ifacePrefix}${hosts.runId}${index}`;
  const peerOf = (index: number): PeerConfig => ({
    publicKey: keys[index]!.publicKey,
    endpoint: `${hosts.hosts[index]!.underlay}:${WG_PORT}`,
    allowedIps: [`${meshIp(index)}/32`],
  });
  const stop = async () => {
    for (const agent of agents) agent.child.stdin!.end(`${JSON.stringify({ op: "stop" })}\n`);
    await Promise.all(
      agents.map((agent) => agent.next((message) => "stopped" in message || "error" in message)),
    );
    await hosts.cleanup();
    await rm(helperDir, { recursive: true, force: true });
  };
  try {
    await buildNetifHelper(join(helperDir, "mill-netif"));
    for (const host of hosts.hosts) {
      const agent = startAgent(host, {
        mode: "mesh",
        iface: ifaceOf(host.index),
        privateKey: keys[host.index]!.privateKey,
        listenPort: WG_PORT,
        address: `${meshIp(host.index)}/16`,
        wgBinary,
        netifBinary: join(helperDir, "mill-netif"),
      });
      agents.push(agent);
      const ready = await agent.next((message) => "ready" in message || "error" in message);
      assert.equal(ready.error, undefined, String(ready.error));
      assert.equal(ready.publicKey, keys[host.index]!.publicKey);
    }
  } catch (error) {
    await hosts.cleanup();
    await rm(helperDir, { recursive: true, force: true });
    throw error;
  }
  return {
    hosts,
    agents,
    keys,
    meshIp,
    ifaceOf,
    peerOf,
    async applyEachOther() {
      for (const [index, agent] of agents.entries()) {
        await agent.request({ op: "apply", peers: [peerOf(1 - index)] });
      }
    },
    stop,
  };
}
