/**
 * The seed's flow with the real executable in three network namespaces and the default
 * `--mesh wireguard`: three ready nodes, WireGuard peers as wireguard-tools sees them, only
 * WireGuard and TLS on the wire (and never the token), WireGuard and node crashes, and the clear
 * error without CAP_NET_ADMIN.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { answeredStatus, eventually, FAST_HEALTH, type StatusJson } from "../../e2e/harness.ts";
import { createHosts, type Host, type Hosts, notRootReason } from "../harness.ts";

const repo = new URL("../../..", import.meta.url).pathname;
const mill = join(repo, "dist", "mill");

describe("a WireGuard mesh cluster in network namespaces", { skip: notRootReason }, () => {
  let net: Hosts;
  let token = "";
  const root = mkdtempSync(join(tmpdir(), "mill-netns-"));
  const dataDir = (node: number) => join(root, `node-${node}`);
  const iface = (node: number) => `mw${net.runId}${node}`;
  const host = (node: number): Host => net.hosts[node - 1]!;

  async function millIn(node: number, args: string[], env: Record<string, string> = {}) {
    const envArgs = Object.entries({ ...FAST_HEALTH, ...env }).map(([k, v]) => `${k}=${v}`);
    return host(node).exec("env", ["-i", `PATH=${process.env.PATH}`, ...envArgs, mill, ...args], {
      timeoutMs: 60_000,
    });
  }

  async function status(node: number): Promise<StatusJson> {
    const answer = await statusIfAnswering(node);
    if (!answer) throw new Error(`status on node ${node}: the node is not answering`);
    return answer;
  }

  async function statusIfAnswering(node: number): Promise<StatusJson | undefined> {
    const result = await millIn(node, ["status", "--json", "--data-dir", dataDir(node)]);
    return answeredStatus(`node ${node}`, result.code, result.stdout, result.stderr);
  }

  const nodeArgs = (node: number) => [
    "--advertise",
    host(node).underlay,
    "--name",
    `node-${node}`,
    "--data-dir",
    dataDir(node),
    "--mesh-interface",
    iface(node),
    "--no-service",
  ];

  before(async () => {
    net = await createHosts(3);
  });
  after(async () => {
    await net?.cleanup();
    // A wireguard-go killed with -9 leaves its UAPI socket in the host-wide folder.
    if (net) {
      for (const name of [iface(1), iface(2), iface(3), `mw${net.runId}x`]) {
        rmSync(`/var/run/wireguard/${name}.sock`, { force: true });
      }
    }
    rmSync(root, { recursive: true, force: true });
  });

  test("init and two joins give three ready nodes on every node", async () => {
    const init = await millIn(1, ["init", ...nodeArgs(1)]);
    assert.equal(init.code, 0, init.stderr);
    token = /Token: (mill_t_\S+)/.exec(init.stdout)?.[1] ?? "";
    assert.ok(token, init.stdout);
    for (const node of [2, 3]) {
      const joined = await millIn(node, [
        "join",
        `${host(1).underlay}:4400`,
        "--token",
        token,
        ...nodeArgs(node),
      ]);
      assert.equal(joined.code, 0, joined.stderr);
    }
    for (const node of [1, 2, 3]) {
      const view = await eventually(`three ready nodes seen from node ${node}`, async () => {
        const seen = await statusIfAnswering(node);
        return seen?.nodes.length === 3 && seen.nodes.every((entry) => entry.status === "ready")
          ? seen
          : undefined;
      });
      assert.deepEqual(
        view.nodes.map((entry) => [entry.name, entry.role]),
        [
          ["node-1", "voter"],
          ["node-2", "voter"],
          ["node-3", "voter"],
        ],
      );
    }
  });

  test("wg show: each node has the two others as peers, with handshakes and /32 allowed IPs", async () => {
    const nodes = (await status(1)).nodes as (StatusJson["nodes"][number] & {
      meshAddress: string;
    })[];
    const meshOf = new Map(nodes.map((node) => [node.name, node.meshAddress]));
    for (const node of [1, 2, 3]) {
      await eventually(`handshakes on node ${node}`, async () => {
        const dump = await host(node).run("wg", ["show", iface(node), "dump"]);
        const peers = dump
          .trim()
          .split("\n")
          .slice(1)
          .map((line) => line.split("\t"));
        if (peers.length !== 2) return undefined;
        const allowed = peers.map((peer) => peer[3]).sort();
        const expected = [1, 2, 3]
          .filter((other) => other !== node)
          .map((other) => `${meshOf.get(`node-${other}`)}/32`)
          .sort();
        assert.deepEqual(allowed, expected);
        const now = Date.now() / 1000;
        return peers.every((peer) => Number(peer[4]) > now - 180) ? true : undefined;
      });
    }
  });

  test("on the wire: only WireGuard UDP and TLS to 4400 between nodes, and never the token", async () => {
    const capture = join(root, "underlay.pcap");
    const dump: ChildProcess = spawn("ip", [
      "netns",
      "exec",
      `mt${net.runId}hub`,
      "tcpdump",
      "-i",
      "br0",
      // Each packet handed over and written as it arrives, not in 1 s batches.
      "--immediate-mode",
      "-U",
      "-s",
      "0",
      "-w",
      capture,
      "ip",
    ]);
    try {
      // tcpdump says so on stderr once it captures; traffic before that would go unseen.
      await new Promise<void>((resolve, reject) => {
        let said = "";
        dump.stderr?.on("data", (chunk) => {
          said += chunk;
          if (said.includes("listening on")) resolve();
        });
        dump.once("exit", (code) => reject(new Error(`tcpdump exited (${code}): ${said}`)));
      });
      // Work that crosses the network while it captures: clients on nodes 2 and 3 ask node 1 over
      // TLS with the token, and each answer waits for a read barrier (Raft heartbeats to the
      // followers through WireGuard).
      for (const node of [2, 3]) {
        const asked = await millIn(node, [
          "status",
          "--address",
          `${host(1).underlay}:4400`,
          "--token",
          token,
        ]);
        assert.equal(asked.code, 0, asked.stderr);
      }
    } finally {
      dump.kill("SIGINT");
      await new Promise((resolve) => dump.once("exit", resolve));
    }
    const packets = await host(1).run("tcpdump", ["-n", "-r", capture, "ip"], {
      timeoutMs: 30_000,
    });
    const lines = packets.trim().split("\n").filter(Boolean);
    assert.ok(lines.length > 0, "the capture saw traffic");
    // One side of every packet is port 4400: WireGuard's UDP, or TCP (TLS) to the public API.
    const onPort4400 = (line: string) => /\.4400[ :]/.test(line);
    const udpOrTcp = (line: string) => / UDP, length /.test(line) || / Flags \[/.test(line);
    const unexpected = lines.filter((line) => !(onPort4400(line) && udpOrTcp(line)));
    assert.deepEqual(unexpected, [], "only UDP to/from the WireGuard port and TCP to 4400");
    const bytes = readFileSync(capture);
    const secret = token.slice("mill_t_".length).split(".")[0]!;
    assert.equal(
      bytes.includes(Buffer.from(secret)),
      false,
      "the token secret never appears in clear",
    );
  });

  test("kill -9 of a node's wireguard-go: it is restarted and the cluster keeps working", async () => {
    const wgPid = Number(readFileSync(join(dataDir(2), "wireguard.pid"), "utf8").trim());
    process.kill(wgPid, "SIGKILL");
    await eventually("a new wireguard-go on node 2", async () => {
      // The pid file is rewritten in place: an empty read is a write in progress.
      const now = Number(readFileSync(join(dataDir(2), "wireguard.pid"), "utf8").trim());
      return now > 0 && now !== wgPid ? now : undefined;
    });
    await eventually("node 2 answering with three ready nodes", async () => {
      const seen = await statusIfAnswering(2);
      return seen?.nodes.every((entry) => entry.status === "ready") ? seen : undefined;
    });
  });

  test("kill -9 of a node: NodeDown, and the survivors keep their tunnel", async () => {
    const pid = Number(readFileSync(join(dataDir(3), "mill.pid"), "utf8").trim());
    process.kill(pid, "SIGKILL");
    await eventually("node-3 down", async () => {
      const seen = await statusIfAnswering(1);
      if (!seen) return undefined;
      // On every look: the survivors are never marked down, not even briefly.
      for (const survivor of ["node-1", "node-2"])
        assert.equal(
          seen.nodes.find((entry) => entry.name === survivor)?.status,
          "ready",
          survivor,
        );
      return seen.nodes.find((entry) => entry.name === "node-3")?.status === "down"
        ? seen
        : undefined;
    });
    const view = await status(2);
    assert.equal(view.nodes.find((entry) => entry.name === "node-1")?.status, "ready");
    const dump = await host(1).run("wg", ["show", iface(1), "dump"]);
    assert.equal(dump.trim().split("\n").length - 1, 2, "NodeDown keeps the peer");
  });

  test("without CAP_NET_ADMIN, init fails at once with the fix", async () => {
    const result = await host(1).exec("setpriv", [
      "--inh-caps=-all",
      "--bounding-set=-net_admin",
      "env",
      "-i",
      `PATH=${process.env.PATH}`,
      mill,
      "init",
      "--advertise",
      host(1).underlay,
      "--data-dir",
      join(root, "nocap"),
      "--mesh-interface",
      `mw${net.runId}x`,
      "--port",
      "4500",
    ]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /CAP_NET_ADMIN/);
    assert.match(result.stderr, /--cap-add NET_ADMIN --device \/dev\/net\/tun/);
  });
});
