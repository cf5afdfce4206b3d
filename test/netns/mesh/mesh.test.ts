import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { generateKeyPair } from "../../../lib/mesh/keys.ts";
import { createHosts, type Hosts, notRootReason } from "../harness.ts";
import {
  type MeshPair,
  pinnedWireguard,
  startAgent,
  startMeshPair,
  WG_PORT,
} from "./agent-client.ts";

const TCP_PORT = 7000;

describe("mesh across two network namespaces", { skip: notRootReason }, () => {
  let pair: MeshPair;
  // The binary Mill ships, not whatever the host has installed.
  before(async () => {
    pair = await startMeshPair(pinnedWireguard(), "mw");
  });
  const meshIp = (index: number) => pair.meshIp(index);
  const ifaceOf = (index: number) => pair.ifaceOf(index);

  after(async () => {
    if (!pair) return;
    await pair.stop();
    const leftovers = (await readdir("/var/run/wireguard")).filter((name) =>
      name.includes(pair.hosts.runId),
    );
    assert.deepEqual(leftovers, [], "stop() left UAPI sockets behind");
  });

  const ping = (from: number, to: number) =>
    pair.hosts.hosts[from]!.run("busybox", ["ping", "-c", "1", "-W", "5", meshIp(to)]);

  async function tcpRoundTrip(from: number, to: number): Promise<string> {
    const server = pair.hosts.hosts[to]!.spawn(process.execPath, [
      "-e",
      `require("node:net").createServer((s) => s.end("pong from ${to}")).listen(${TCP_PORT}, "${meshIp(to)}", () => console.log("listening"))`,
    ]);
    try {
      await new Promise<void>((resolve, reject) => {
        server.stdout!.once("data", () => resolve());
        server.once("exit", (code) => reject(new Error(`TCP server exited ${code}`)));
      });
      const script = `exec 3<>/dev/tcp/${meshIp(to)}/${TCP_PORT} && cat <&3`;
      return (
        await pair.hosts.hosts[from]!.run("bash", ["-c", script], { timeoutMs: 10_000 })
      ).trim();
    } finally {
      server.kill("SIGKILL");
    }
  }

  it("applies each other as peers and reports the diff", async () => {
    for (const [index, agent] of pair.agents.entries()) {
      const other = 1 - index;
      const reply = await agent.request({ op: "apply", peers: [pair.peerOf(other)] });
      assert.deepEqual(reply.diff, {
        added: [pair.keys[other]!.publicKey],
        removed: [],
        changed: [],
      });
    }
  });

  it("carries ping and TCP over the mesh addresses", async () => {
    await ping(0, 1);
    await ping(1, 0);
    assert.equal(await tcpRoundTrip(0, 1), "pong from 1");
    assert.equal(await tcpRoundTrip(1, 0), "pong from 0");
  });

  it("shows the peer with a handshake and its allowed IP in `wg show`", async () => {
    for (const host of pair.hosts.hosts) {
      const other = 1 - host.index;
      const iface = ifaceOf(host.index);
      assert.equal(
        (await host.run("wg", ["show", iface, "peers"])).trim(),
        pair.keys[other]!.publicKey,
      );
      assert.equal(
        (await host.run("wg", ["show", iface, "allowed-ips"])).trim(),
        `${pair.keys[other]!.publicKey}\t${meshIp(other)}/32`,
      );
      const [, handshake] = (await host.run("wg", ["show", iface, "latest-handshakes"]))
        .trim()
        .split("\t");
      assert.ok(Number(handshake) > 0, `no handshake on ${iface}`);
      const address = await host.run("ip", ["-4", "-o", "address", "show", "dev", iface]);
      assert.match(address, new RegExp(`inet ${meshIp(host.index).replaceAll(".", "\\.")}/16`));
    }
    const status = await pair.agents[0]!.request({ op: "status" });
    const [peer] = status.peers as {
      publicKey: string;
      handshakeAgeMs?: number;
      rxBytes: number;
    }[];
    assert.equal(peer!.publicKey, pair.keys[1]!.publicKey);
    assert.ok(peer!.handshakeAgeMs !== undefined && peer!.rxBytes > 0);
  });

  it("restarts wireguard-go after kill -9 and traffic resumes", async () => {
    const before = (await pair.agents[0]!.request({ op: "status" })).pid as number;
    process.kill(before, "SIGKILL");
    const exited = await pair.agents[0]!.next(
      (message) => (message.event as { type?: string })?.type === "exited",
    );
    assert.equal((exited.event as { signal: string }).signal, "SIGKILL");
    const started = await pair.agents[0]!.next((message) => {
      const event = message.event as { type?: string; pid?: number } | undefined;
      return event?.type === "started" && event.pid !== before;
    });
    const after = (started.event as { pid: number }).pid;
    assert.equal((await pair.agents[0]!.request({ op: "status" })).pid, after);
    await ping(0, 1);
    assert.equal(await tcpRoundTrip(1, 0), "pong from 0");
    const iface = ifaceOf(0);
    assert.equal(
      (await pair.hosts.hosts[0]!.run("wg", ["show", iface, "allowed-ips"])).trim(),
      `${pair.keys[1]!.publicKey}\t${meshIp(1)}/32`,
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
    wgBinary: pinnedWireguard(),
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
