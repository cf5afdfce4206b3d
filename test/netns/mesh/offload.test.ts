/**
 * TUN segmentation offloads are in effect on the mesh Mill starts with the wireguard-go it embeds:
 * the TUN carries the virtio-net header, and a bulk TCP transfer crosses it in packets larger than
 * the MTU (TSO on the sender's TUN, GRO on the receiver's). The previous binary (Debian 12's, if
 * installed) shows neither, so the evidence tells the two apart.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DEFAULT_MTU } from "../../../lib/mesh/netif.ts";
import { notRootReason } from "../harness.ts";
import {
  type MeshPair,
  pinnedWireguard,
  SYSTEM_WIREGUARD,
  startMeshPair,
  wireguardVersion,
} from "./agent-client.ts";
import { bytesPerPacket, countersOf, tunOffloadsIn } from "./tun.ts";

const IPERF_PORT = 5202;
const isNoOffloads = (message: Record<string, unknown>) =>
  (message.event as { type?: string } | undefined)?.type === "no-offloads";
/** The release that added TUN offloads; Debian 12's binary predates it. */
const OFFLOAD_RELEASE = "v0.0.20230223";

interface Transfer {
  /** Bytes per packet the kernel handed the sender's wireguard-go through its TUN. */
  readonly senderTx: number;
  /** Bytes per packet the receiver's wireguard-go wrote into its TUN. */
  readonly receiverRx: number;
}

/** 32 MB of TCP from host 1 to host 0 over the mesh, with the TUN counters around it. */
async function transfer(pair: MeshPair): Promise<Transfer> {
  const [receiver, sender] = pair.hosts.hosts;
  const pids = await Promise.all(
    pair.agents.map(async (agent) => (await agent.request({ op: "status" })).pid as number),
  );
  const read = () => [countersOf(pids[0]!, pair.ifaceOf(0)), countersOf(pids[1]!, pair.ifaceOf(1))];
  const server = receiver!.spawn("iperf3", [
    "-s",
    "-1",
    // Its stdout is a pipe here: without this, "Server listening" stays in its buffer.
    "--forceflush",
    "-B",
    pair.meshIp(0),
    "-p",
    String(IPERF_PORT),
  ]);
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("iperf3 server silent for 10 s")), 10_000);
      server.stdout!.on("data", (chunk: Buffer) => {
        if (chunk.toString().includes("Server listening")) {
          clearTimeout(timer);
          resolve();
        }
      });
      server.once("exit", (code) => reject(new Error(`iperf3 server exited ${code}`)));
    });
    const [receiverBefore, senderBefore] = read();
    await sender!.run(
      "iperf3",
      ["-c", pair.meshIp(0), "-p", String(IPERF_PORT), "-n", "32M", "-J"],
      { timeoutMs: 60_000 },
    );
    const [receiverAfter, senderAfter] = read();
    return {
      senderTx: bytesPerPacket(senderBefore!, senderAfter!, "tx"),
      receiverRx: bytesPerPacket(receiverBefore!, receiverAfter!, "rx"),
    };
  } finally {
    server.kill("SIGKILL");
  }
}

describe("the embedded wireguard-go runs its TUN with offloads", { skip: notRootReason }, () => {
  let pair: MeshPair | undefined;
  before(async () => {
    pair = await startMeshPair(pinnedWireguard(), "mo");
    await pair.applyEachOther();
  });
  after(() => pair?.stop());

  it("opens the TUN with the virtio-net header, and the supervisor warns of nothing", async () => {
    for (const host of pair!.hosts.hosts) {
      assert.equal(await tunOffloadsIn(host, pair!.ifaceOf(host.index)), true);
      assert.equal(pair!.agents[host.index]!.received(isNoOffloads), undefined);
    }
  });

  it("moves TCP in segments larger than the MTU through both TUNs (TSO and GRO)", async () => {
    const seen = await transfer(pair!);
    assert.ok(seen.senderTx > DEFAULT_MTU, `sender's TUN: ${seen.senderTx} bytes per packet`);
    assert.ok(seen.receiverRx > DEFAULT_MTU, `receiver's TUN: ${seen.receiverRx} bytes per packet`);
  });
});

const previousVersion = wireguardVersion(SYSTEM_WIREGUARD);
const previousSkip =
  notRootReason ||
  (previousVersion === undefined
    ? `${SYSTEM_WIREGUARD} is not installed (apt-get install wireguard-go on Debian 12)`
    : previousVersion >= OFFLOAD_RELEASE
      ? `${SYSTEM_WIREGUARD} is ${previousVersion}, which has offloads too`
      : false);

describe("the previous wireguard-go shows no offloads", { skip: previousSkip }, () => {
  let pair: MeshPair | undefined;
  before(async () => {
    pair = await startMeshPair(SYSTEM_WIREGUARD, "mp");
    await pair.applyEachOther();
  });
  after(() => pair?.stop());

  it("opens the TUN without the header and moves no packet larger than the MTU", async () => {
    assert.equal(await tunOffloadsIn(pair!.hosts.hosts[0]!, pair!.ifaceOf(0)), false);
    const seen = await transfer(pair!);
    assert.ok(seen.senderTx <= DEFAULT_MTU, `sender's TUN: ${seen.senderTx} bytes per packet`);
    assert.ok(
      seen.receiverRx <= DEFAULT_MTU,
      `receiver's TUN: ${seen.receiverRx} bytes per packet`,
    );
  });

  it("the supervisor reports the missing offloads with the fix", () => {
    const report = pair!.agents[0]!.received(isNoOffloads);
    assert.match(
      String((report?.event as { why?: string } | undefined)?.why),
      /^\/usr\/bin\/wireguard-go runs mp\w+ without TUN segmentation offloads .*unset MILL_WG_BINARY/,
    );
  });
});
