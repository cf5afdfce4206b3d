/**
 * The mesh address plan and the desired WireGuard configuration of a node, as pure functions.
 * Owns: CIDR parsing, address allocation, node list → peer list, peer diffs for logs, whether an
 * address is inside the mesh.
 * Must not touch: sockets, processes, files, clocks.
 */
import { isIPv4, isIPv6 } from "node:net";
import { parsePublicKey } from "./keys.ts";
import type { DeviceConfig, PeerConfig } from "./uapi.ts";

export const DEFAULT_MESH_CIDR = "10.99.0.0/16";

export interface Cidr {
  /** The network address as an unsigned 32-bit integer. */
  readonly network: number;
  readonly prefix: number;
}

/** What the mesh needs to know about one cluster node. */
export interface MeshNode {
  readonly id: string;
  /** base64; a node without one has not started its mesh yet and gets no peer entry. */
  readonly publicKey?: string;
  /** Its mesh address, "10.99.0.7" (a "/prefix" suffix is ignored). */
  readonly meshAddress: string;
  /** The IP literal other nodes reach it on (WireGuard rejects host names). */
  readonly advertiseAddress: string;
  readonly wireguardPort: number;
}

export interface PeerDiff {
  /** Public keys (base64) of peers that appear, disappear, or whose endpoint or allowed IPs change. */
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly changed: readonly string[];
}

export function parseIPv4(text: string): number {
  if (!isIPv4(text))
    throw new Error(`invalid IPv4 address ${JSON.stringify(text)}: expected a.b.c.d`);
  return text.split(".").reduce((value, octet) => value * 256 + Number(octet), 0);
}

export function formatIPv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join(".");
}

/** Mesh ranges need room for at least two hosts besides the network and broadcast addresses. */
export function parseCidr(text: string): Cidr {
  const match = /^([^/]+)\/(\d{1,2})$/.exec(text);
  const prefix = match ? Number(match[2]) : Number.NaN;
  if (!match || !isIPv4(match[1]!) || prefix < 8 || prefix > 30) {
    throw new Error(
      `invalid mesh CIDR ${JSON.stringify(text)}: expected an IPv4 network with a prefix from /8 to /30, e.g. ${DEFAULT_MESH_CIDR}`,
    );
  }
  const network = parseIPv4(match[1]!);
  if (network % hostCount(prefix) !== 0) {
    const aligned = network - (network % hostCount(prefix));
    throw new Error(
      `invalid mesh CIDR ${text}: host bits are set; did you mean ${formatIPv4(aligned)}/${prefix}?`,
    );
  }
  return { network, prefix };
}

function hostCount(prefix: number): number {
  return 2 ** (32 - prefix);
}

export function cidrContains(cidr: Cidr, address: number): boolean {
  return address >= cidr.network && address < cidr.network + hostCount(cidr.prefix);
}

/** The range an interface address belongs to: "10.99.0.7/16" → 10.99.0.0/16. */
export function networkOf(interfaceAddress: string): Cidr {
  const [host = "", prefix = ""] = interfaceAddress.split("/");
  const value = parseIPv4(host);
  const size = hostCount(Number(prefix));
  return parseCidr(`${formatIPv4(value - (value % size))}/${prefix}`);
}

/**
 * Why a connection from `remoteAddress` did not come through the mesh, or undefined when it did.
 * A node listens for Raft and the internal API on its mesh address, but the kernel also delivers
 * to that address what arrives on other interfaces, from anyone who routes the mesh range to the
 * node. What WireGuard delivers comes from inside the range (each peer's own address), and a
 * forged source inside it never gets the answer (that goes back into WireGuard), so the source
 * address tells the two apart.
 */
export function outsideMesh(mesh: Cidr, remoteAddress: string): string | undefined {
  const ipv4 = /^(?:::ffff:)?(\d+\.\d+\.\d+\.\d+)$/i.exec(remoteAddress)?.[1];
  if (ipv4 !== undefined && isIPv4(ipv4) && cidrContains(mesh, parseIPv4(ipv4))) return undefined;
  return `it did not come through the mesh (its address is outside ${formatIPv4(mesh.network)}/${mesh.prefix})`;
}

/** "10.99.0.7/16" or "10.99.0.7" → "10.99.0.7". */
export function hostPart(address: string): string {
  return address.split("/")[0]!;
}

/**
 * The next free host address after the highest one in use, wrapping to the lowest free one, so a
 * departed node's address is handed out again only when the range is otherwise exhausted (stale
 * peer entries elsewhere then cannot hijack a new node's traffic).
 */
export function allocateAddress(cidr: Cidr, inUse: readonly string[]): string {
  const first = cidr.network + 1;
  const last = cidr.network + hostCount(cidr.prefix) - 2;
  const taken = new Set(
    inUse
      .map((address) => parseIPv4(hostPart(address)))
      .filter((value) => cidrContains(cidr, value)),
  );
  const highest = Math.max(first - 1, ...taken);
  for (let step = 0; step <= last - first; step++) {
    const candidate = first + ((highest + 1 - first + step) % (last - first + 1));
    if (!taken.has(candidate)) return formatIPv4(candidate);
  }
  throw new Error(
    `mesh range ${formatIPv4(cidr.network)}/${cidr.prefix} is full (${taken.size} addresses in use): choose a larger mesh CIDR`,
  );
}

/** The interface address of a host in the mesh: "10.99.0.7/16", so the kernel routes the whole range. */
export function interfaceAddress(cidr: Cidr, host: string): string {
  if (!cidrContains(cidr, parseIPv4(host))) {
    throw new Error(`mesh address ${host} is outside ${formatIPv4(cidr.network)}/${cidr.prefix}`);
  }
  return `${host}/${cidr.prefix}`;
}

/** "ip:port" for the UAPI, with brackets around IPv6. */
export function formatEndpoint(address: string, port: number): string {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`invalid WireGuard port ${port}: expected 1-65535`);
  }
  if (isIPv4(address)) return `${address}:${port}`;
  if (isIPv6(address)) return `[${address}]:${port}`;
  throw new Error(
    `invalid advertise address ${JSON.stringify(address)}: WireGuard endpoints must be IP literals, not host names`,
  );
}

/** Every other node that has a key, as a peer: its mesh address/32 via its advertise address. */
export function peersFor(selfId: string, nodes: readonly MeshNode[]): PeerConfig[] {
  const self = nodes.find((node) => node.id === selfId);
  const seenKeys = new Map<string, string>();
  const seenAddresses = new Map<string, string>();
  const peers: PeerConfig[] = [];
  for (const node of nodes) {
    const address = hostPart(node.meshAddress);
    parseIPv4(address);
    const holder = seenAddresses.get(address);
    if (holder !== undefined) {
      throw new Error(
        `nodes ${holder} and ${node.id} share mesh address ${address}: each node needs its own`,
      );
    }
    seenAddresses.set(address, node.id);
    if (node.publicKey === undefined) continue;
    parsePublicKey(node.publicKey);
    const owner = seenKeys.get(node.publicKey);
    if (owner !== undefined) {
      throw new Error(
        `nodes ${owner} and ${node.id} share WireGuard key ${node.publicKey}: each node needs its own`,
      );
    }
    seenKeys.set(node.publicKey, node.id);
    if (node.id === selfId || node.publicKey === self?.publicKey) continue;
    peers.push({
      publicKey: node.publicKey,
      endpoint: formatEndpoint(node.advertiseAddress, node.wireguardPort),
      allowedIps: [`${address}/32`],
    });
  }
  return peers.sort((a, b) => (a.publicKey < b.publicKey ? -1 : a.publicKey > b.publicKey ? 1 : 0));
}

export function desiredConfig(
  self: { readonly id: string; readonly privateKey: string; readonly listenPort: number },
  nodes: readonly MeshNode[],
): DeviceConfig {
  return {
    privateKey: self.privateKey,
    listenPort: self.listenPort,
    peers: peersFor(self.id, nodes),
  };
}

export function diffPeers(before: readonly PeerConfig[], after: readonly PeerConfig[]): PeerDiff {
  const old = new Map(before.map((peer) => [peer.publicKey, peer]));
  const next = new Map(after.map((peer) => [peer.publicKey, peer]));
  const added = [...next.keys()].filter((key) => !old.has(key));
  const removed = [...old.keys()].filter((key) => !next.has(key));
  const changed = [...next.keys()].filter((key) => {
    const previous = old.get(key);
    return previous !== undefined && !samePeer(previous, next.get(key)!);
  });
  return { added, removed, changed };
}

function samePeer(a: PeerConfig, b: PeerConfig): boolean {
  return (
    a.endpoint === b.endpoint &&
    [...a.allowedIps].sort().join(",") === [...b.allowedIps].sort().join(",")
  );
}
