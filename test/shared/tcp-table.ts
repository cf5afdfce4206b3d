/**
 * The kernel's own view of IPv4 TCP sockets in this network namespace (/proc/net/tcp): which
 * connections a node process holds, which still wait in a listener's accept queue, which are
 * still in their handshake. A test reads it to know what a node did with connections, without
 * timing the node and without the node reporting on itself.
 */
import { readFileSync } from "node:fs";
import { endianness } from "node:os";
import { pollUntil } from "../../lib/shared/poll.ts";

/** The states a test asks about (include/net/tcp_states.h); others keep their number. */
export const TCP_STATE = { established: 0x01, synReceived: 0x03, listen: 0x0a } as const;

export interface TcpRow {
  readonly local: string;
  readonly localPort: number;
  readonly remote: string;
  readonly remotePort: number;
  readonly state: number;
  /**
   * For a listener, the connections in its accept queue (accepted by the kernel, not yet by the
   * process); for a connection, the bytes received and not yet read.
   */
  readonly rxQueue: number;
}

/** "0100007F:1131" (the address as the kernel's 32-bit word, in the host's byte order). */
function endpoint(text: string): { address: string; port: number } {
  const [hex = "", port = ""] = text.split(":");
  const bytes = Buffer.from(hex, "hex");
  if (endianness() === "LE") bytes.reverse();
  return { address: [...bytes].join("."), port: Number.parseInt(port, 16) };
}

export function tcpTable(): TcpRow[] {
  const lines = readFileSync("/proc/net/tcp", "utf8").trim().split("\n").slice(1);
  return lines.map((line) => {
    const [, local = "", remote = "", state = "", queues = ""] = line.trim().split(/\s+/);
    const from = endpoint(local);
    const to = endpoint(remote);
    return {
      local: from.address,
      localPort: from.port,
      remote: to.address,
      remotePort: to.port,
      state: Number.parseInt(state, 16),
      rxQueue: Number.parseInt(queues.split(":")[1] ?? "", 16),
    };
  });
}

/** A listening socket and which of the connections to it a test opened. */
export interface Connections {
  readonly address: string;
  readonly port: number;
  /** Whether a connection from `remote:remotePort` is one of the test's. */
  readonly from: (remote: string, remotePort: number) => boolean;
}

const toListener = (row: TcpRow, to: Connections) =>
  row.local === to.address && row.localPort === to.port;
const ofTest = (row: TcpRow, to: Connections) =>
  toListener(row, to) && to.from(row.remote, row.remotePort);

/**
 * Resolves once the process listening at `to` has accepted every connection the test opened
 * (all of them connected first): none is still in the kernel's handshake, then the accept queue
 * is empty. A connection enters that queue only from the handshake, so once both hold, in that
 * order, none waits anywhere. What the process did with each one is then up to its callbacks.
 */
export async function untilAccepted(to: Connections, timeoutMs = 20_000): Promise<void> {
  await pollUntil(
    () => !tcpTable().some((row) => row.state === TCP_STATE.synReceived && ofTest(row, to)),
    timeoutMs,
    () => new Error(`connections to ${to.address}:${to.port} still in the kernel's handshake`),
  );
  await pollUntil(
    () => {
      const listener = tcpTable().find(
        (row) => row.state === TCP_STATE.listen && toListener(row, to),
      );
      if (!listener) throw new Error(`nothing listens at ${to.address}:${to.port}`);
      return listener.rxQueue === 0;
    },
    timeoutMs,
    () => new Error(`connections to ${to.address}:${to.port} still in the accept queue`),
  );
}

/** How many of the test's connections to `to` are open at the listener's end. */
export const heldOpen = (to: Connections): number =>
  tcpTable().filter((row) => row.state === TCP_STATE.established && ofTest(row, to)).length;
