/**
 * Reserved source ports: a node's agent dials its peers from a port below 1024, which an
 * unprivileged process cannot bind, so that the peer can keep connections from such ports in a
 * pool of their own that a local user of the dialling host cannot fill. Pure decisions only: which
 * port to try next, when to give up on the reserve, whether this host reserves low ports at all.
 * A leaf of lib/shared. Owns: the range and those decisions. Must not touch: sockets (the platform
 * adapters bind them), what a pool admits (lib/raft/transport/admission.ts, lib/platform).
 * A privileged port is never taken as proof of identity: it only decides which pool a connection
 * that has not authenticated yet waits in.
 */

import type { Socket } from "node:net";

/** Where a dialled connection goes, and the local address it leaves from (else the kernel's choice). */
export interface DialTarget {
  readonly host: string;
  readonly port: number;
  readonly localAddress?: string;
  /** Given up (the promise rejects, the socket is destroyed) if not connected within this. */
  readonly timeoutMs: number;
}

/** Opens a TCP connection; resolves once it is connected (lib/platform's reservedDialler). */
export type Dial = (target: DialTarget) => Promise<Socket>;

/** The ports the agent dials from, inclusive (below 1024, above the well-known services). */
export const RESERVED_PORTS = { first: 600, last: 1023 } as const;

/** Ports tried for one connection before it leaves from an ordinary port. */
export const RESERVED_TRIES = 32;

/** Whether `port` is one an unprivileged process cannot bind (by Linux's default). */
export function isPrivilegedPort(port: number | undefined): boolean {
  return port !== undefined && port > 0 && port < 1024;
}

/** Why one try at a reserved port failed: someone holds it, or this process may not bind it. */
export type PortFailure = "taken" | "forbidden";

/** What a dial does next: try `port`, or leave from an ordinary (ephemeral) port, saying why. */
export type NextPort =
  | { readonly port: number }
  | { readonly ephemeral: string; readonly forbidden: boolean };

/** The first port to try; `random` is in [0, 1), so dials spread over the range. */
export function firstReservedPort(random: number): number {
  const size = RESERVED_PORTS.last - RESERVED_PORTS.first + 1;
  return RESERVED_PORTS.first + Math.min(size - 1, Math.floor(random * size));
}

/**
 * After try number `tries` (1 for the first), at `port`, failed with `failure`: the next port in
 * the range (wrapping), or an ordinary port when this process may not bind low ports or `tries`
 * reached RESERVED_TRIES.
 */
export function afterFailedPort(port: number, tries: number, failure: PortFailure): NextPort {
  if (failure === "forbidden") {
    return {
      ephemeral:
        "this process may not bind ports below 1024 (it needs root or CAP_NET_BIND_SERVICE)",
      forbidden: true,
    };
  }
  if (tries >= RESERVED_TRIES) {
    return {
      ephemeral: `${tries} reserved ports (${RESERVED_PORTS.first}-${RESERVED_PORTS.last}) were in use`,
      forbidden: false,
    };
  }
  const next = port >= RESERVED_PORTS.last ? RESERVED_PORTS.first : port + 1;
  return { port: next };
}

/**
 * The line an agent logs at start when its host lets any user bind low ports, given the content
 * of /proc/sys/net/ipv4/ip_unprivileged_port_start (undefined when it could not be read: a kernel
 * without the setting reserves ports below 1024). Undefined when the reserve holds.
 */
export function unreservedPortsNote(unprivilegedPortStart: string | undefined): string | undefined {
  if (unprivilegedPortStart === undefined) return undefined;
  const start = Number(unprivilegedPortStart.trim());
  if (!Number.isInteger(start) || start > RESERVED_PORTS.last) return undefined;
  return `net.ipv4.ip_unprivileged_port_start is ${start} on this host: any local user may bind ports from ${start} up, so peers cannot tell this agent's connections from a local user's by their source port, and a local user here can fill this node's connection slots on its peers (set it to 1024 to reserve low ports)`;
}
