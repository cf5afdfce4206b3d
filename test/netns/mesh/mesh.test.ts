import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { generateKeyPair } from "../../../lib/mesh/keys.ts";
import { buildNetifHelper } from "../../../lib/mesh/netif-build.ts";
import type { PeerConfig } from "../../../lib/mesh/uapi.ts";
import { createHosts, type Host, type Hosts, notRootReason } from "../harness.ts";

const AGENT = fileURLToPath(new URL("./agent.ts", import.meta.url));
const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const WG_PORT = 51820;
const TCP_PORT = 7000;

/** One agent process in a namespace, spoken to in JSON lines. */
class Agent {
  private readonly waiting: ((message: Record<string, unknown>) => boolean)[] = [];
  private readonly backlog: Record<string, unknown>[] = [];

  constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const message = JSON.parse(line) as Record<string, unknown>;
      const taker = this.waiting.findIndex((accept) => accept(message));
      if (taker >= 0) this.waiting.splice(taker, 1);
      else this.backlog.push(message);
    });
  }

  /** The next message that matches, from the backlog or as it arrives. */
  next(match: (message: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    const found = this.backlog.findIndex(match);
    if (found >= 0) return Promise.resolve(this.backlog.splice(found, 1)[0]!);
    return new Promise((resolve) =>
      this.waiting.push((message) => {
        if (!match(message)) return false;
        resolve(message);
        return true;
      }),
    );
  }

  async request(command: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.child.stdin!.write(`${JSON.stringify(command)}\n`);
    const reply = await this.next((message) => message.op === command.op);
    assert.equal(reply.error, undefined, `${String(command.op)} failed: ${String(reply.error)}`);
    return reply;
  }
}

function startAgent(host: Host, options: Record<string, unknown>, wrapper: string[] = []): Agent {
  const [command, ...args] = [...wrapper, process.execPath, "--import", "tsx", AGENT];
  const child = host.spawn(command!, args, { cwd: REPO, stdio: ["pipe", "pipe", "inherit"] });
  child.stdin!.write(`${JSON.stringify(options)}\n`);
  return new Agent(child);
}

describe("mesh across two network namespaces", { skip: notRootReason }, () => {
  let hosts: Hosts;
  let helperDir: string;
  const agents: Agent[] = [];
  const keys = [generateKeyPair(), generateKeyPair()];
  const meshIp = (index: number) => `10.99.0.${index + 1}`;
  const ifaceOf = (index: number) => `mw${hosts.runId}${index}`;
  const peerOf = (index: number): PeerConfig => ({
    publicKey: keys[index]!.publicKey,
    endpoint: `${hosts.hosts[index]!.underlay}:${WG_PORT}`,
    allowedIps: [`${meshIp(index)}/32`],
  });

  before(async () => {
    helperDir = await mkdtemp(join(tmpdir(), "mill-netif-"));
    await buildNetifHelper(join(helperDir, "mill-netif"));
    hosts = await createHosts(2);
    for (const host of hosts.hosts) {
      const agent = startAgent(host, {
        mode: "mesh",
        iface: ifaceOf(host.index),
        privateKey: keys[host.index]!.privateKey,
        listenPort: WG_PORT,
        address: `${meshIp(host.index)}/16`,
        wgBinary: "wireguard-go",
        netifBinary: join(helperDir, "mill-netif"),
      });
      agents.push(agent);
      const ready = await agent.next((message) => "ready" in message || "error" in message);
      assert.equal(ready.error, undefined, String(ready.error));
      assert.equal(ready.publicKey, keys[host.index]!.publicKey);
    }
  });

  after(async () => {
    for (const agent of agents) agent.child.stdin!.end(`${JSON.stringify({ op: "stop" })}\n`);
    await Promise.all(
      agents.map((agent) => agent.next((message) => "stopped" in message || "error" in message)),
    );
    await hosts?.cleanup();
    await rm(helperDir, { recursive: true, force: true });
    const leftovers = (await readdir("/var/run/wireguard")).filter((name) =>
      name.includes(hosts.runId),
    );
    assert.deepEqual(leftovers, [], "stop() left UAPI sockets behind");
  });

  const ping = (from: number, to: number) =>
    hosts.hosts[from]!.run("busybox", ["ping", "-c", "1", "-W", "5", meshIp(to)]);

  async function tcpRoundTrip(from: number, to: number): Promise<string> {
    const server = hosts.hosts[to]!.spawn(process.execPath, [
      "-e",
      `require("node:net").createServer((s) => s.end("pong from ${to}")).listen(${TCP_PORT}, "${meshIp(to)}", () => console.log("listening"))`,
    ]);
    try {
      await new Promise<void>((resolve, reject) => {
        server.stdout!.once("data", () => resolve());
        server.once("exit", (code) => reject(new Error(`TCP server exited ${code}`)));
      });
      const script = `exec 3<>/dev/tcp/${meshIp(to)}/${TCP_PORT} && cat <&3`;
      return (await hosts.hosts[from]!.run("bash", ["-c", script], { timeoutMs: 10_000 })).trim();
    } finally {
      server.kill("SIGKILL");
    }
  }

  it("applies each other as peers and reports the diff", async () => {
    for (const [index, agent] of agents.entries()) {
      const other = 1 - index;
      const reply = await agent.request({ op: "apply", peers: [peerOf(other)] });
      assert.deepEqual(reply.diff, { added: [keys[other]!.publicKey], removed: [], changed: [] });
    }
  });

  it("carries ping and TCP over the mesh addresses", async () => {
    await ping(0, 1);
    await ping(1, 0);
    assert.equal(await tcpRoundTrip(0, 1), "pong from 1");
    assert.equal(await tcpRoundTrip(1, 0), "pong from 0");
  });

  it("shows the peer with a handshake and its allowed IP in `wg show`", async () => {
    for (const host of hosts.hosts) {
      const other = 1 - host.index;
      const iface = ifaceOf(host.index);
      assert.equal((await host.run("wg", ["show", iface, "peers"])).trim(), keys[other]!.publicKey);
      assert.equal(
        (await host.run("wg", ["show", iface, "allowed-ips"])).trim(),
        `${keys[other]!.publicKey}\t${meshIp(other)}/32`,
      );
      const [, handshake] = (await host.run("wg", ["show", iface, "latest-handshakes"]))
        .trim()
        .split("\t");
      assert.ok(Number(handshake) > 0, `no handshake on ${iface}`);
      const address = await host.run("ip", ["-4", "-o", "address", "show", "dev", iface]);
      assert.match(address, new RegExp(`inet ${meshIp(host.index).replaceAll(".", "\\.")}/16`));
    }
    const status = await agents[0]!.request({ op: "status" });
    const [peer] = status.peers as {
      publicKey: string;
      handshakeAgeMs?: number;
      rxBytes: number;
    }[];
    assert.equal(peer!.publicKey, keys[1]!.publicKey);
    assert.ok(peer!.handshakeAgeMs !== undefined && peer!.rxBytes > 0);
  });

  it("restarts wireguard-go after kill -9 and traffic resumes", async () => {
    const before = (await agents[0]!.request({ op: "status" })).pid as number;
    process.kill(before, "SIGKILL");
    const exited = await agents[0]!.next(
      (message) => (message.event as { type?: string })?.type === "exited",
    );
    assert.equal((exited.event as { signal: string }).signal, "SIGKILL");
    const started = await agents[0]!.next((message) => {
      const event = message.event as { type?: string; pid?: number } | undefined;
      return event?.type === "started" && event.pid !== before;
    });
    const after = (started.event as { pid: number }).pid;
    assert.equal((await agents[0]!.request({ op: "status" })).pid, after);
    await ping(0, 1);
    assert.equal(await tcpRoundTrip(1, 0), "pong from 0");
    const iface = ifaceOf(0);
    assert.equal(
      (await hosts.hosts[0]!.run("wg", ["show", iface, "allowed-ips"])).trim(),
      `${keys[1]!.publicKey}\t${meshIp(1)}/32`,
    );
  });
});

describe("mesh start-up without CAP_NET_ADMIN", { skip: notRootReason }, () => {
  let hosts: Hosts;
  before(async () => {
    hosts = await createHosts(1);
  });
  after(async () => {
    await hosts?.cleanup();
  });
  const dropNetAdmin = [
    "setpriv",
    "--inh-caps=-all",
    "--ambient-caps=-all",
    "--bounding-set=-net_admin",
  ];
  const options = () => ({
    iface: `mw${hosts.runId}x`,
    privateKey: generateKeyPair().privateKey,
    listenPort: WG_PORT,
    address: "10.99.0.1/16",
    wgBinary: "wireguard-go",
  });

  it("preflight names the missing capability and the fixes", async () => {
    const agent = startAgent(hosts.hosts[0]!, { ...options(), mode: "mesh" }, dropNetAdmin);
    const reply = await agent.next((message) => "error" in message || "ready" in message);
    assert.match(String(reply.error), /^CAP_NET_ADMIN is not in effect/);
    assert.match(String(reply.error), /--cap-add NET_ADMIN --device \/dev\/net\/tun/);
    assert.match(String(reply.error), /AmbientCapabilities=CAP_NET_ADMIN/);
  });

  it("explains wireguard-go's own failure when preflight is skipped", async () => {
    const agent = startAgent(hosts.hosts[0]!, { ...options(), mode: "wireguard" }, dropNetAdmin);
    const reply = await agent.next((message) => "error" in message);
    assert.match(
      String(reply.error),
      /^wireguard-go could not start mw\w+: CAP_NET_ADMIN is missing; grant CAP_NET_ADMIN/,
    );
  });
});
