/**
 * What `init` and `join` check on this host before they write or start anything: the data dir can
 * be written, and the advertise address is this host's with the node's ports free on it (the
 * public API, Raft next to it, and with the mesh WireGuard's UDP port). Each check tries exactly
 * what the node will do (bind), so its answer is the node's.
 * Owns: those checks and their one-line refusals. Must not touch: the steps that follow them.
 */
import { createSocket } from "node:dgram";
import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { createServer } from "node:net";
import { networkInterfaces } from "node:os";
import { dirname } from "node:path";
import type { MeshMode } from "../cluster/validate.ts";
import { formatEndpoint } from "../mesh/plan.ts";

/** A check failed; the message names what and how to fix it. */
export class HostCheckError extends Error {
  override name = "HostCheckError";
}

export interface HostPlan {
  readonly dataDir: string;
  readonly advertise: string;
  readonly port: number;
  readonly mesh: MeshMode;
}

/** Every check, in the order a reader would look: the dir, the address, then each port. */
export async function checkHost(plan: HostPlan): Promise<void> {
  await checkDataDir(plan.dataDir);
  await checkTcp(plan.advertise, plan.port, "--port (the public API)");
  await checkTcp(plan.advertise, plan.port + 1, "--port + 1 (Raft)");
  if (plan.mesh === "wireguard") await checkUdp(plan.port, "--port (WireGuard, UDP)");
}

async function checkDataDir(dataDir: string): Promise<void> {
  let dir = dataDir;
  for (;;) {
    const info = await stat(dir).catch(() => undefined);
    if (info) {
      if (!info.isDirectory())
        throw new HostCheckError(`${dir} is not a directory: pick another --data-dir`);
      try {
        await access(dir, constants.W_OK | constants.X_OK);
      } catch {
        throw new HostCheckError(
          `${dir} is not writable by this user: run as the user that owns it (root for /var/lib/mill), or pick another --data-dir`,
        );
      }
      return;
    }
    if (dirname(dir) === dir) return;
    dir = dirname(dir);
  }
}

function addressesHere(): string {
  const all = Object.values(networkInterfaces())
    .flat()
    .map((entry) => entry?.address)
    .filter((address): address is string => address !== undefined);
  return all.join(", ");
}

function refusal(error: NodeJS.ErrnoException, address: string, port: number, what: string): Error {
  if (error.code === "EADDRNOTAVAIL") {
    return new HostCheckError(
      `--advertise ${address} is not an address of this host (it has ${addressesHere()}): pass one of them`,
    );
  }
  if (error.code === "EADDRINUSE") {
    return new HostCheckError(
      `${formatEndpoint(address, port)} is already in use, and the node needs it for ${what}: stop what listens there, or pick another --port`,
    );
  }
  if (error.code === "EACCES") {
    return new HostCheckError(
      `binding ${formatEndpoint(address, port)} (${what}) is not permitted for this user: pick a --port above 1023, or run as root`,
    );
  }
  return new HostCheckError(
    `cannot bind ${formatEndpoint(address, port)} (${what}): ${error.message}`,
  );
}

function checkTcp(address: string, port: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", (error) => reject(refusal(error, address, port, what)));
    server.listen({ host: address, port, exclusive: true }, () => server.close(() => resolve()));
  });
}

/**
 * WireGuard listens on every address, IPv4 and IPv6 alike (wireguard-go fails to start when
 * either is taken), so the UDP port must be free on all of them. A host without IPv6 has only the
 * first to check.
 */
async function checkUdp(port: number, what: string): Promise<void> {
  const ipv4 = await bindUdp("udp4", "0.0.0.0", port);
  if (ipv4) throw refusal(ipv4, "0.0.0.0", port, what);
  const ipv6 = await bindUdp("udp6", "::", port);
  if (ipv6 && !NO_IPV6.includes(ipv6.code ?? "")) throw refusal(ipv6, "::", port, what);
}

/** What binding [::] answers on a host without IPv6. */
const NO_IPV6 = ["EAFNOSUPPORT", "EADDRNOTAVAIL", "EPROTONOSUPPORT"];

/** Binds and closes a UDP port; resolves with the error if it could not be bound. */
function bindUdp(
  type: "udp4" | "udp6",
  address: string,
  port: number,
): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    // IPv6 only: the IPv4 side is checked on its own, and a dual-stack bind would hide which.
    const socket = createSocket({ type, ipv6Only: type === "udp6" });
    socket.once("error", (error) => resolve(error));
    socket.bind({ address, port, exclusive: true }, () => socket.close(() => resolve(undefined)));
  });
}
