/**
 * Facts about the host a node runs on: where its data lives by default, which address it advertises,
 * what resources it offers. Decisions are pure functions over gathered facts.
 * Owns: host defaults. Must not touch: cluster state, the network beyond reading interface tables.
 */
import { readFileSync } from "node:fs";
import { availableParallelism, homedir, networkInterfaces, totalmem } from "node:os";
import { join } from "node:path";
import type { NodeResources } from "../shared/node-facts.ts";

/** MILL_DATA_DIR, else /var/lib/mill as root, else $XDG_STATE_HOME/mill. */
export function defaultDataDir(env: NodeJS.ProcessEnv, uid: number | undefined): string {
  if (env.MILL_DATA_DIR) return env.MILL_DATA_DIR;
  if (uid === 0) return "/var/lib/mill";
  return join(env.XDG_STATE_HOME || join(homedir(), ".local", "state"), "mill");
}

/** The interface of the IPv4 default route in /proc/net/route's text, if any. */
export function defaultRouteInterface(routeTable: string): string | undefined {
  for (const line of routeTable.split("\n").slice(1)) {
    const [iface, destination, , , , , , mask] = line.trim().split(/\s+/);
    if (iface && destination === "00000000" && mask === "00000000") return iface;
  }
  return undefined;
}

export interface InterfaceAddress {
  readonly address: string;
  readonly family: string;
  readonly internal: boolean;
}

const DOCKER_BRIDGE = /^(docker\d*|br-[0-9a-f]+|cni\d*|virbr\d*)$/;

/** Why an address cannot be advertised to other nodes, or undefined when it can. */
export function advertiseProblem(address: string, allowLoopback: boolean): string | undefined {
  if (address === "0.0.0.0" || address === "::") {
    return `${address} is not an address other nodes can reach; pass --advertise with this host's IP`;
  }
  if ((address.startsWith("127.") || address === "::1") && !allowLoopback) {
    return `${address} is loopback; other nodes cannot reach it (loopback is only for one-host clusters)`;
  }
  if (address.startsWith("172.17.")) {
    return `${address} looks like a Docker bridge address; pass --advertise with the host's own IP`;
  }
  return undefined;
}

/** The first IPv4 address of the default route's interface, skipping bridges and loopback. */
export function pickAdvertise(
  routeInterface: string | undefined,
  interfaces: Readonly<Record<string, readonly InterfaceAddress[] | undefined>>,
): string | undefined {
  if (!routeInterface || DOCKER_BRIDGE.test(routeInterface)) return undefined;
  return interfaces[routeInterface]?.find((entry) => entry.family === "IPv4" && !entry.internal)
    ?.address;
}

export function detectAdvertise(): string | undefined {
  let routes = "";
  try {
    routes = readFileSync("/proc/net/route", "utf8");
  } catch {
    return undefined;
  }
  return pickAdvertise(defaultRouteInterface(routes), networkInterfaces());
}

/**
 * /proc/sys/net/ipv4/ip_unprivileged_port_start: the first port any user may bind (Linux), or
 * undefined where it cannot be read (a kernel without the setting reserves ports below 1024).
 */
export function unprivilegedPortStart(): string | undefined {
  try {
    return readFileSync("/proc/sys/net/ipv4/ip_unprivileged_port_start", "utf8");
  } catch {
    return undefined;
  }
}

export function hostResources(): NodeResources {
  return { cores: availableParallelism(), memoryBytes: totalmem() };
}
