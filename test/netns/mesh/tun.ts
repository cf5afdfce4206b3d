/**
 * Evidence, read from outside wireguard-go, that its TUN device runs with segmentation offloads.
 * wireguard-go (since v0.0.20230223) opens the TUN with IFF_VNET_HDR and, when the kernel accepts
 * it, turns on checksum and TCP segmentation offload (TUNSETOFFLOAD). Then the kernel hands it TCP
 * segments of up to 64 KB to encrypt (TSO), and it writes received packets back coalesced (GRO):
 * on the TUN, bytes per packet exceed the MTU. Without offloads no packet on it can.
 * Owns: reading the flags and counters. Must not touch: the interfaces.
 */
import { readFileSync } from "node:fs";
import { offloadsFromTunFlags } from "../../../lib/mesh/netif.ts";
import type { Host } from "../harness.ts";

/**
 * Whether the TUN runs with offloads, read from its sysfs flags inside the namespace (sysfs shows the
 * namespace it was mounted in, so the host's own /sys cannot see these interfaces).
 */
export async function tunOffloadsIn(host: Host, iface: string): Promise<boolean> {
  const text = await host.run("cat", [`/sys/class/net/${iface}/tun_flags`]);
  const offloads = offloadsFromTunFlags(text);
  if (offloads === undefined)
    throw new Error(`${iface}: unexpected tun_flags ${JSON.stringify(text)}`);
  return offloads;
}

export interface Counters {
  readonly rxBytes: number;
  readonly rxPackets: number;
  readonly txBytes: number;
  readonly txPackets: number;
}

/**
 * An interface's counters in the network namespace of process `pid` (/proc/PID/net/dev shows that
 * process's namespace, so no process has to be started inside it).
 */
export function countersOf(pid: number, iface: string): Counters {
  const line = readFileSync(`/proc/${pid}/net/dev`, "utf8")
    .split("\n")
    .find((row) => row.trimStart().startsWith(`${iface}:`));
  if (line === undefined) throw new Error(`no interface ${iface} in the namespace of pid ${pid}`);
  const fields = line
    .slice(line.indexOf(":") + 1)
    .trim()
    .split(/\s+/)
    .map(Number);
  return {
    rxBytes: fields[0]!,
    rxPackets: fields[1]!,
    txBytes: fields[8]!,
    txPackets: fields[9]!,
  };
}

/** Mean bytes per packet between two readings, in one direction. */
export function bytesPerPacket(before: Counters, after: Counters, direction: "rx" | "tx"): number {
  const bytes = after[`${direction}Bytes`] - before[`${direction}Bytes`];
  const packets = after[`${direction}Packets`] - before[`${direction}Packets`];
  if (packets <= 0) throw new Error(`no ${direction} packets between the two readings`);
  return bytes / packets;
}
