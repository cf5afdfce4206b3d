/**
 * Flags shared by several commands, and turning them into validated values.
 * Owns: flag definitions and their parsing. Must not touch: what commands do with them.
 */

import { isIP } from "node:net";
import { hostname } from "node:os";
import type { ArgsDef } from "citty";
import type { MeshMode } from "../cluster/validate.ts";
import { checkName } from "../cluster/validate.ts";
import { DEFAULT_MESH_CIDR } from "../mesh/plan.ts";
import { DEFAULT_PORT } from "../node/client.ts";
import { advertiseProblem, defaultDataDir, detectAdvertise } from "../node/host.ts";
import { UsageError } from "./errors.ts";

export const dataDirArg = {
  "data-dir": {
    type: "string",
    description: "Where the node keeps its state (default: MILL_DATA_DIR, /var/lib/mill as root)",
    valueHint: "DIR",
  },
} satisfies ArgsDef;

export const clientArgs = {
  address: {
    type: "string",
    description: "A node's public API, HOST[:PORT] (default: MILL_ADDRESS, else the local node)",
    valueHint: "HOST:PORT",
  },
  token: {
    type: "string",
    description: "The cluster token (default: MILL_TOKEN, else the local node's)",
    valueHint: "TOKEN",
  },
  json: { type: "boolean", description: "Print JSON" },
  ...dataDirArg,
} satisfies ArgsDef;

export const nodeArgs = {
  advertise: {
    type: "string",
    description: "The IP other nodes reach this one on (default: the default route's address)",
    valueHint: "IP",
  },
  port: { type: "string", description: "Public API port", default: String(DEFAULT_PORT) },
  name: { type: "string", description: "Node name (default: the hostname)", valueHint: "NAME" },
  mesh: {
    type: "enum",
    options: ["wireguard", "none"],
    description:
      "Node-to-node transport: a WireGuard mesh, or plain addresses (one-host development)",
    default: "wireguard",
  },
  "mesh-interface": {
    type: "string",
    description: "WireGuard interface name (unique on the host)",
    default: "mill0",
  },
  foreground: {
    type: "boolean",
    description: "Keep the node attached instead of detaching it (implies --no-service)",
  },
  service: {
    type: "boolean",
    description: "Where PID 1 is systemd, hand the node to mill.service so it survives reboots",
    default: true,
  },
  ...dataDirArg,
} satisfies ArgsDef;

export const meshCidrArg = {
  "mesh-cidr": {
    type: "string",
    description: "The cluster's mesh address range",
    default: DEFAULT_MESH_CIDR,
  },
} satisfies ArgsDef;

export function resolveDataDir(flag: string | undefined): string {
  return flag || defaultDataDir(process.env, process.getuid?.());
}

export function parsePort(text: string): number {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 1 || port > 65534) {
    throw new UsageError(`--port ${text} is not a port number from 1 to 65534`);
  }
  return port;
}

export function resolveName(flag: string | undefined): string {
  const name = flag || hostname().toLowerCase().split(".")[0]!;
  const problem = checkName(name, "node name");
  if (problem) throw new UsageError(problem);
  return name;
}

/**
 * The advertise address: the flag or the default route's address. Loopback is allowed only when
 * the other side (the node joined through) is loopback too: a one-host development cluster.
 */
export function resolveAdvertise(flag: string | undefined, peerHost?: string): string {
  const address = flag || detectAdvertise();
  if (!address) {
    throw new UsageError(
      "cannot find this host's address: pass --advertise with the IP other nodes reach it on",
    );
  }
  if (isIP(address) === 0) throw new UsageError(`--advertise ${address} is not an IP address`);
  const allowLoopback = peerHost === undefined || peerHost.startsWith("127.") || peerHost === "::1";
  const problem = advertiseProblem(address, allowLoopback);
  if (problem) throw new UsageError(`--advertise: ${problem}`);
  return address;
}

export function resolveMesh(flag: string | undefined): MeshMode {
  return flag === "none" ? "none" : "wireguard";
}
