/**
 * What an attacker sends to a node's Raft port, shared by the loopback attacker suite
 * (attacks.test.ts) and the one in network namespaces with the mesh (test/netns/cluster): the
 * forged frames of issue 11's finding 1, a 64 MiB frame header, and connections in clear TCP or
 * over TLS with a key of the attacker's choosing.
 * Owns: those frames and connections. Must not touch: what a test asserts about them.
 */
import { once } from "node:events";
import { connect as connectTcp, type Socket } from "node:net";
import { connect as connectTls, type TLSSocket } from "node:tls";
import type { ClusterIdentity } from "../../lib/identity/x509.ts";
import { encodeFrame, encodeHello } from "../../lib/raft/transport/frames.ts";
import type { Message } from "../../lib/raft/types.ts";
import { PROTOCOL_VERSION } from "../../lib/shared/protocol.ts";

export const RAFT_PORT = 4401;
/** A term no cluster under test reaches: a node that took it would show it in `mill status`. */
export const HIGH_TERM = 1_000_000;
/** A frame header declaring 64 MiB (the length prefix of frames.ts), and nothing after it. */
export const HEADER_64_MIB = Buffer.from([0x04, 0, 0, 0]);

/** The forged frames of finding 1, addressed to `to`, claiming to come from `from`. */
export function forged(from: number, to: number): Message[] {
  return [
    {
      type: "snapshot",
      from,
      to,
      term: HIGH_TERM,
      snapshot: {
        meta: { index: 1_000, term: HIGH_TERM, membership: { voters: [from], learners: [] } },
        data: new TextEncoder().encode("forged state"),
      },
    },
    { type: "vote", from, to, term: HIGH_TERM, lastIndex: 1_000, lastTerm: HIGH_TERM },
    {
      type: "append",
      from,
      to,
      term: HIGH_TERM,
      prevIndex: 0,
      prevTerm: 0,
      commit: 1_000,
      entries: [],
    },
  ];
}

export const framesOf = (messages: Message[]) =>
  Buffer.concat(messages.map((message) => encodeFrame(message)));

export interface RaftTarget {
  readonly host: string;
  readonly port?: number;
  /** The address to connect from (loopback suites pick one per attacker). */
  readonly localAddress?: string;
}

/** A clear TCP connection to a Raft port, once connected; whatever the node answers is dropped. */
export function tcpTo(target: RaftTarget): Promise<Socket> {
  const socket = connectTcp(tcpOptions(target));
  socket.on("error", () => {});
  socket.resume();
  return once(socket, "connect").then(() => socket);
}

/** A TLS connection showing `as`'s certificate, after its handshake and a member's hello. */
export function tlsTo(target: RaftTarget, as: ClusterIdentity): Promise<TLSSocket> {
  const tcp = connectTcp(tcpOptions(target));
  tcp.on("error", () => {});
  const socket = connectTls({
    socket: tcp,
    cert: as.certPem,
    key: as.keyPem,
    rejectUnauthorized: false,
  });
  socket.on("error", () => {});
  socket.resume();
  // A member's first bytes: the hello with the protocol version.
  return once(socket, "secureConnect").then(() => {
    socket.write(encodeHello(PROTOCOL_VERSION));
    return socket;
  });
}

/** Resolves once `socket` closes. */
export const closed = (socket: Socket) =>
  new Promise<void>((resolve) => {
    if (socket.destroyed) resolve();
    else socket.once("close", () => resolve());
  });

function tcpOptions(target: RaftTarget) {
  return {
    host: target.host,
    port: target.port ?? RAFT_PORT,
    ...(target.localAddress === undefined ? {} : { localAddress: target.localAddress }),
  };
}
