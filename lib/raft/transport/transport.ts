/**
 * Raft's network: persistent mutual-TLS connections carrying length-prefixed CBOR frames.
 * One outbound connection per peer (reconnected with backoff, bounded send queue that drops on
 * overflow: Raft retransmits); inbound connections receive frames and answer only with one
 * acknowledgement byte now and then, the sender's proof that the connection delivers. A bad
 * inbound frame closes that one connection with one logged reason naming the peer; nothing a peer
 * sends can throw out of a socket handler. Inbound connections are capped per source and in
 * total (admission.ts), those from a privileged source port (below 1024) in a pool of their own,
 * and closed when idle; frames are read into buffers that grow with the bytes that arrive
 * (frames.ts), never sized by what a header declares. The dialler leaves from a reserved port
 * when the caller gives it a `dial` that does (the agent does: lib/platform), so a local user on
 * its host, who cannot bind one, cannot fill its slots on the peer.
 *
 * A source the node does not take at all (with the mesh, one outside it: `refuseSource`) is
 * closed on arrival, before it holds a slot or starts a handshake.
 *
 * Authentication: both ends present their node certificate (TransportTls). A connection is read
 * only once the peer's certificate names a current member (`peerOf`); from then on it is bound to
 * that node, and a frame whose `from` is anyone else closes it, logged with the peer's name. A
 * dialled peer must present the key of the node we meant to reach. Nothing is read before the
 * handshake ends, and a handshake must end within `handshakeMs`. A node that stops being a member
 * (`isMember`) loses its connections with its next frame. After the handshake each end sends a
 * hello with its protocol version (frames.ts); ends of different major versions part at once, as
 * do a peer below the protocol the cluster committed (checked again with every frame, so a
 * connection made before the cluster raised it ends too), and the dialler leaves that peer alone
 * for INCOMPATIBLE_RETRY_MS rather than redialling in a loop; the accepting end logs it at most
 * once a minute per source, as an older dialler that does not know why may keep dialling.
 * Owns: sockets, TLS and their queues. Must not touch: Raft state, storage, what a key is (the
 * caller maps certificates to nodes).
 */

import { createConnection, type Socket } from "node:net";
import { connect, createServer, type Server, type TLSSocket } from "node:tls";
import { concatBytes } from "../../shared/bytes.ts";
import { type Cancel, type Clock, systemClock } from "../../shared/clock.ts";
import { errorMessage } from "../../shared/errors.ts";
import {
  BASELINE_PROTOCOL,
  compatibleProtocols,
  formatProtocol,
  protocolRefusal,
} from "../../shared/protocol.ts";
import { type Dial, isPrivilegedPort } from "../../shared/reserved-ports.ts";
import type { Message, NodeId } from "../types.ts";
import {
  Admission,
  type AdmissionLimits,
  DEFAULT_ADMISSION_LIMITS,
  LogThrottle,
  type Pool,
} from "./admission.ts";
import {
  DEFAULT_MAX_FRAME_BYTES,
  encodeFrame,
  encodeHello,
  encodeRefusal,
  FrameDecoder,
  HelloReader,
  REFUSAL_BYTE,
  type Version,
} from "./frames.ts";

/** This node's TLS identity and how to tell which member a peer's certificate belongs to. */
export interface TransportTls {
  readonly certPem: string;
  readonly keyPem: string;
  /** The current member whose key is in `certDer` (the peer's DER certificate), if any. */
  peerOf(certDer: Uint8Array): NodeId | undefined;
  /** Whether node `id` is still a member: its connections end with its membership. */
  isMember(id: NodeId): boolean;
}

export interface TransportOptions {
  readonly id: NodeId;
  readonly tls: TransportTls;
  /**
   * The protocol this node speaks (lib/shared/protocol.ts), sent in each connection's hello: a
   * peer of another major version is refused, with a line naming both versions.
   */
  readonly protocol: Version;
  /**
   * The protocol the cluster committed (lib/cluster/protocol-gate.ts): a peer of its major below
   * its minor is refused like one of another major. Default: the baseline, which refuses nobody.
   */
  readonly clusterProtocol?: () => Version;
  /**
   * A peer refused this node because the cluster committed `cluster`, above this node's protocol
   * (it sent a refusal, frames.ts); the dialler leaves it alone for INCOMPATIBLE_RETRY_MS too.
   */
  readonly refusedBelow?: (cluster: Version) => void;
  /** Whether `from` may send a frame above the small limit now (it leads this node). */
  readonly largeFramesFrom?: (from: NodeId) => boolean;
  /** Where to listen; port 0 picks a free one (see Transport.port). */
  readonly host: string;
  readonly port: number;
  /** A peer's "host:port", or undefined when unknown (its messages are dropped). */
  readonly resolve: (id: NodeId) => string | undefined;
  /** Receives each valid inbound message addressed to this node. */
  readonly onMessage: (message: Message) => void;
  /** The largest frame taken at all (a snapshot); other frames stop at 4 MiB (frames.ts). */
  readonly maxFrameBytes?: number;
  readonly maxSmallFrameBytes?: number;
  /**
   * Why a connection from this address is refused before anything else (no slot, no TLS), or
   * undefined to take it: with the mesh, sources that did not come through it.
   */
  readonly refuseSource?: (address: string) => string | undefined;
  /** Caps on inbound connections (admission.ts), for each pool. */
  readonly admission?: AdmissionLimits;
  /**
   * How the dialler opens its TCP connections: the agent's leaves from a reserved port
   * (lib/platform). Default: from an ordinary port.
   */
  readonly dial?: Dial;
  /** An inbound connection silent this long is closed; its peer dials again when it has news. */
  readonly idleMs?: number;
  /** An inbound connection must finish its TLS handshake within this. */
  readonly handshakeMs?: number;
  /** Bytes that may wait for one peer (in our queue plus the socket's buffer). */
  readonly maxQueueBytes?: number;
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /**
   * A connection that has carried messages to a peer for this long without an acknowledgement on
   * it, or that has not connected within it, is dropped and dialled again. Inbound connections
   * acknowledge what they receive within a quarter of it. Default 2000 ms.
   */
  readonly stallMs?: number;
  /**
   * The transport's time: the dialler's reconnect back-off, connect and stall timeouts, and its
   * pause after a peer of another major version; the acknowledgements of inbound connections.
   * Default: real time.
   */
  readonly clock?: Pick<Clock, "now" | "after">;
  readonly warn?: (message: string) => void;
}

export interface Transport {
  readonly port: number;
  /**
   * The protocol in the hello of the current connection to `id` (authenticated by its key), or
   * undefined while there is none: what the frames queued for it now will travel on.
   */
  peerProtocol(id: NodeId): Version | undefined;
  /** Queues messages to their peers; frames for one peer leave in one write. Never throws. */
  send(messages: readonly Message[]): void;
  close(): Promise<void>;
}

export async function startTransport(options: TransportOptions): Promise<Transport> {
  const transport = new TcpTransport(options);
  await transport.listen();
  return transport;
}

const isWildcard = (host: string) => host === "" || host === "0.0.0.0" || host === "::";

/** Splits "host:port" or "[v6]:port". */
export function parseAddress(address: string): { host: string; port: number } | undefined {
  const match = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(address);
  const port = Number(match?.[2]);
  if (!match?.[1] || port < 1 || port > 65535) return undefined;
  return { host: match[1], port };
}

class TcpTransport implements Transport {
  private readonly server: Server;
  /** Every inbound TCP connection, authenticated or not, so close() can end them all. */
  private readonly inbound = new Set<Socket>();
  /** Inbound connections still in their handshake, by "address:port": what admission counts. */
  private readonly pending = new Map<string, { source: string; pool: Pool }>();
  private readonly links = new Map<NodeId, PeerLink>();
  private readonly warn: (message: string) => void;
  private readonly admission: Admission;
  private readonly refusals = new LogThrottle();
  private closed = false;
  port = 0;

  constructor(private readonly options: TransportOptions) {
    this.warn = options.warn ?? console.warn;
    this.admission = new Admission(options.admission ?? DEFAULT_ADMISSION_LIMITS);
    this.server = createServer(
      {
        cert: options.tls.certPem,
        key: options.tls.keyPem,
        minVersion: "TLSv1.3",
        // Every peer must show a certificate; which ones count is peerOf's to say, not a CA's.
        requestCert: true,
        rejectUnauthorized: false,
        handshakeTimeout: options.handshakeMs ?? DEFAULT_HANDSHAKE_MS,
      },
      (socket) => this.authenticate(socket),
    );
    this.server.on("connection", (socket: Socket) => this.admit(socket));
    this.server.on("tlsClientError", (error: Error, socket: TLSSocket) => {
      // A peer that hung up (or one refused above) has nothing left to refuse.
      if ((error as NodeJS.ErrnoException).code === "ECONNRESET") return;
      const source = socket.remoteAddress ?? "an unknown address";
      this.refuse(
        source,
        "handshake",
        `refusing a connection from ${source}: TLS handshake failed (${errorMessage(error)})`,
      );
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off("error", reject);
        const address = this.server.address();
        this.port = typeof address === "object" && address ? address.port : this.options.port;
        resolve();
      });
    });
  }

  /** A new TCP connection, before any TLS: counted against the caps until it authenticates. */
  private admit(socket: Socket): void {
    const source = socket.remoteAddress ?? "";
    if (this.closed) {
      socket.destroy();
      return;
    }
    const refusal = this.options.refuseSource?.(source);
    if (refusal !== undefined) {
      this.refuse(source, "source", `refusing a connection from ${source}: ${refusal}`);
      socket.destroy();
      return;
    }
    // The source port only picks the pool the connection waits in; it proves nothing.
    const pool: Pool = isPrivilegedPort(socket.remotePort) ? "privileged" : "unprivileged";
    const admitted = this.admission.admit(source, pool);
    if (!admitted.ok) {
      this.refuse(source, "cap", `refusing a connection from ${source}: ${admitted.reason}`);
      socket.destroy();
      return;
    }
    const key = `${source}:${socket.remotePort}`;
    this.pending.set(key, { source, pool });
    this.inbound.add(socket);
    const handshakeMs = this.options.handshakeMs ?? DEFAULT_HANDSHAKE_MS;
    const timer = setTimeout(() => {
      if (!this.pending.has(key)) return;
      this.refuse(
        source,
        "slow",
        `closing the connection from ${key}: no TLS handshake within ${handshakeMs} ms`,
      );
      socket.destroy();
    }, handshakeMs);
    socket.once("close", () => {
      clearTimeout(timer);
      this.inbound.delete(socket);
      this.settle(key);
    });
    socket.on("error", () => socket.destroy());
  }

  /** The connection `key` has finished its handshake or closed: it no longer holds a slot. */
  private settle(key: string): void {
    const waiting = this.pending.get(key);
    if (waiting === undefined) return;
    this.pending.delete(key);
    this.admission.release(waiting.source, waiting.pool);
  }

  /** A finished handshake: read the connection only if its certificate is a current member's. */
  private authenticate(socket: TLSSocket): void {
    const source = socket.remoteAddress ?? "";
    const address = `${source}:${socket.remotePort}`;
    this.settle(address);
    socket.on("error", () => socket.destroy());
    if (this.closed) {
      socket.destroy();
      return;
    }
    const der = socket.getPeerCertificate()?.raw;
    const peer = der ? this.options.tls.peerOf(new Uint8Array(der)) : undefined;
    if (peer === undefined) {
      this.refuse(
        source,
        der ? "stranger" : "anonymous",
        `refusing a connection from ${address}: ${der ? "its certificate is not the key of a current member" : "it presented no certificate"}`,
      );
      socket.destroy();
      return;
    }
    this.serve(socket, peer, `node ${peer} (${address})`);
  }

  /** Reads frames from an authenticated connection bound to node `peer`. */
  private serve(socket: TLSSocket, peer: NodeId, name: string): void {
    socket.setNoDelay(true);
    socket.setTimeout(this.options.idleMs ?? DEFAULT_IDLE_MS, () => socket.destroy());
    const decoder = new FrameDecoder({
      maxFrameBytes: this.options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      ...(this.options.maxSmallFrameBytes === undefined
        ? {}
        : { maxSmallFrameBytes: this.options.maxSmallFrameBytes }),
      maySendLarge: () => this.options.largeFramesFrom?.(peer) ?? false,
    });
    const acknowledge = acknowledger(
      socket,
      (this.options.stallMs ?? DEFAULT_STALL_MS) / 4,
      this.options.clock ?? systemClock,
    );
    const { protocol } = this.options;
    socket.write(encodeHello(protocol));
    let hello: HelloReader | undefined = new HelloReader();
    let theirs: Version | undefined;
    socket.on("data", (data: Uint8Array) => {
      if (socket.destroyed) return;
      let chunk = data;
      try {
        if (!this.options.tls.isMember(peer)) throw new Error(`node ${peer} is no longer a member`);
        if (hello) {
          const read = hello.push(chunk);
          if (!read) return;
          hello = undefined;
          theirs = read.version;
          chunk = read.rest;
        }
        const refusal = theirs && peerRefusal(this.options, theirs);
        if (refusal) {
          const source = socket.remoteAddress ?? "";
          this.refuse(
            source,
            "protocol",
            `closing the connection from ${name}: it ${refusal}: refusing it`,
          );
          // end, not destroy: our hello must reach the dialler, so it knows why and waits; one of
          // our major below the cluster protocol learns that from the refusal that follows it.
          socket.removeAllListeners("data");
          const cluster = this.options.clusterProtocol?.();
          if (cluster && compatibleProtocols(theirs!, protocol))
            socket.write(encodeRefusal(cluster));
          socket.end();
          setTimeout(() => socket.destroy(), 1000).unref();
          return;
        }
        for (const message of decoder.push(chunk)) {
          if (message.from !== peer) {
            throw new Error(
              `dropped a ${message.type} message claiming to come from node ${message.from}`,
            );
          }
          if (message.to !== this.options.id) {
            throw new Error(`a message for node ${message.to} reached node ${this.options.id}`);
          }
          this.options.onMessage(message);
        }
        acknowledge();
      } catch (error) {
        // Whatever went wrong, it ends this one connection and never the process.
        this.warn(`raft transport: closing the connection from ${name}: ${errorMessage(error)}`);
        socket.destroy();
      }
    });
  }

  /** Logs a refusal at most once a minute per source and kind, so a flood cannot flood the log. */
  private refuse(source: string, kind: string, line: string): void {
    if (this.refusals.allow(`${kind} ${source}`, Date.now())) this.warn(`raft transport: ${line}`);
  }

  peerProtocol(id: NodeId): Version | undefined {
    return this.links.get(id)?.protocol;
  }

  send(messages: readonly Message[]): void {
    if (this.closed) return;
    const byPeer = new Map<NodeId, Uint8Array[]>();
    for (const message of messages) {
      const frames = byPeer.get(message.to);
      if (frames) frames.push(encodeFrame(message));
      else byPeer.set(message.to, [encodeFrame(message)]);
    }
    for (const [to, frames] of byPeer) {
      let link = this.links.get(to);
      if (!link) {
        link = new PeerLink(to, this.options);
        this.links.set(to, link);
      }
      link.send(frames);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const link of this.links.values()) link.close();
    for (const socket of this.inbound) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

const DEFAULT_STALL_MS = 2000;
const DEFAULT_IDLE_MS = 60_000;
const DEFAULT_HANDSHAKE_MS = 5_000;
/** How long a dialler leaves alone a peer that speaks another major protocol version. */
const INCOMPATIBLE_RETRY_MS = 60_000;

/** Why a peer speaking `theirs` is refused now; undefined when it is taken. */
function peerRefusal(options: TransportOptions, theirs: Version): string | undefined {
  const cluster = options.clusterProtocol?.() ?? BASELINE_PROTOCOL;
  return protocolRefusal(theirs, options.protocol, cluster);
}

const ACK = new Uint8Array([6]);

/**
 * Acknowledges an inbound connection's data with one byte, at most once per `everyMs` and at the
 * latest `everyMs` after any data, so a busy connection costs next to nothing.
 */
function acknowledger(
  socket: Socket,
  everyMs: number,
  clock: Pick<Clock, "now" | "after">,
): () => void {
  let lastAt = Number.NEGATIVE_INFINITY;
  let cancel: Cancel | undefined;
  const send = () => {
    cancel = undefined;
    lastAt = clock.now();
    if (!socket.destroyed) socket.write(ACK);
  };
  socket.on("close", () => cancel?.());
  return () => {
    if (cancel) return;
    const wait = lastAt + everyMs - clock.now();
    if (wait <= 0) send();
    else cancel = clock.after(wait, send);
  };
}

/**
 * The outbound connection to one peer. A link that keeps carrying messages without an
 * acknowledgement on it is presumed dead: after a partition heals, TCP would otherwise sit in its
 * exponential retransmission back-off for seconds or minutes on a connection that no longer
 * delivers. Only the connection's own acknowledgements count: a peer that talks to us (say, asks
 * for votes) may still not hear us, and the fault suite caught a leader misled that way.
 */
class PeerLink {
  private socket: TLSSocket | undefined;
  private connected = false;
  private queue: Uint8Array[] = [];
  private queuedBytes = 0;
  private backoffMs: number;
  private cancelRetry: Cancel | undefined;
  private cancelConnect: Cancel | undefined;
  /** Set while `options.dial` opens the TCP connection, before there is a socket. */
  private dialling = false;
  /** Since when we have sent without an acknowledgement; undefined once one arrived. */
  private waitingSince: number | undefined;
  /** Until when the peer is left alone: it spoke a protocol this node refuses. */
  private incompatibleUntil = 0;
  /** What the peer's hello on the current connection said, and where that connection goes. */
  private theirs: Version | undefined;
  private address: string | undefined;
  private closed = false;
  private readonly maxQueueBytes: number;
  private readonly stallMs: number;
  private readonly clock: Pick<Clock, "now" | "after">;

  constructor(
    private readonly to: NodeId,
    private readonly options: TransportOptions,
  ) {
    this.backoffMs = options.minBackoffMs ?? 50;
    this.maxQueueBytes =
      options.maxQueueBytes ?? (options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES) * 2;
    this.stallMs = options.stallMs ?? DEFAULT_STALL_MS;
    this.clock = options.clock ?? systemClock;
  }

  send(frames: Uint8Array[]): void {
    if (this.closed) return;
    const now = this.clock.now();
    if (now < this.incompatibleUntil) return;
    // Refused since it connected: the cluster raised its protocol above the peer's.
    if (this.theirs && this.socket && this.leaveAlone(this.theirs, this.socket)) return;
    if (this.waitingSince === undefined) this.waitingSince = now;
    else if (this.connected && now - this.waitingSince > this.stallMs) {
      this.options.warn?.(
        `raft transport: no word from node ${this.to} for ${now - this.waitingSince} ms; reconnecting`,
      );
      this.waitingSince = now;
      this.socket?.destroy();
    }
    const socket = this.socket;
    const inSocket = socket?.writableLength ?? 0;
    for (const frame of frames) {
      // Drop what does not fit: Raft resends anything a peer still needs.
      if (inSocket + this.queuedBytes + frame.length > this.maxQueueBytes) continue;
      this.queue.push(frame);
      this.queuedBytes += frame.length;
    }
    if (this.connected) this.flush();
    else if (!socket && !this.cancelRetry && !this.dialling) this.connect();
  }

  /**
   * Writes what is queued, once the peer's hello was taken: a refused peer gets no frame at all.
   * A peer that never says hello holds the queue until the stall check drops the connection.
   */
  private flush(): void {
    if (this.queue.length === 0 || !this.socket || !this.theirs) return;
    const bytes = concatBytes(this.queue);
    this.dropQueue();
    this.socket.write(bytes);
  }

  private connect(): void {
    const address = this.options.resolve(this.to);
    this.address = address;
    const target = address === undefined ? undefined : parseAddress(address);
    if (!target) {
      this.dropQueue();
      return;
    }
    // From our own address, so peers count our connections apart from other users of the host.
    const local = isWildcard(this.options.host) ? {} : { localAddress: this.options.host };
    const { dial } = this.options;
    if (!dial) {
      this.secure(createConnection({ ...target, ...local }), address);
      return;
    }
    this.dialling = true;
    dial({ ...target, ...local, timeoutMs: this.stallMs }).then(
      (tcp) => {
        this.dialling = false;
        if (this.closed) tcp.destroy();
        else this.secure(tcp, address);
      },
      () => {
        this.dialling = false;
        this.dropQueue();
        if (!this.closed) this.retryLater();
      },
    );
  }

  /** Runs TLS over `tcp`, the new connection to this peer at `address`. */
  private secure(tcp: Socket, address: string | undefined): void {
    const { tls } = this.options;
    tcp.on("error", () => tcp.destroy());
    const socket = connect({
      socket: tcp,
      cert: tls.certPem,
      key: tls.keyPem,
      minVersion: "TLSv1.3",
      // The peer is checked against the key its node registered, below, not against a CA.
      rejectUnauthorized: false,
    });
    this.socket = socket;
    socket.setNoDelay(true);
    // A SYN into a partition is retried by the kernel for minutes; give up sooner and redial.
    this.cancelConnect = this.clock.after(this.stallMs, () => socket.destroy());
    socket.on("secureConnect", () => {
      this.cancelConnect?.();
      const der = socket.getPeerCertificate()?.raw;
      if (!der || tls.peerOf(new Uint8Array(der)) !== this.to) {
        this.options.warn?.(
          `raft transport: ${address} does not hold the key of node ${this.to}; not sending to it`,
        );
        socket.destroy();
        return;
      }
      this.connected = true;
      this.waitingSince = undefined;
      this.backoffMs = this.options.minBackoffMs ?? 50;
      socket.write(encodeHello(this.options.protocol));
    });
    let hello: HelloReader | undefined = new HelloReader();
    /** Reading a refusal: the accepting end says the cluster's protocol is above ours. */
    let refusal: HelloReader | undefined;
    socket.on("data", (data: Uint8Array) => {
      let chunk = data;
      if (hello) {
        let read: ReturnType<HelloReader["push"]>;
        try {
          read = hello.push(chunk);
        } catch (error) {
          this.options.warn?.(
            `raft transport: node ${this.to} at ${address}: ${errorMessage(error)}`,
          );
          socket.destroy();
          return;
        }
        if (!read) return;
        hello = undefined;
        if (this.socket !== socket || this.leaveAlone(read.version, socket)) return;
        this.theirs = read.version;
        this.flush();
        chunk = read.rest;
      }
      if (!refusal && chunk[0] === REFUSAL_BYTE) {
        refusal = new HelloReader();
        chunk = chunk.subarray(1);
      }
      if (refusal) {
        let read: ReturnType<HelloReader["push"]>;
        try {
          read = refusal.push(chunk);
        } catch {
          socket.destroy();
          return;
        }
        if (read) this.refused(read.version, socket);
        return;
      }
      if (this.socket === socket) this.waitingSince = undefined;
    });
    socket.on("error", () => socket.destroy());
    socket.on("close", () => {
      this.cancelConnect?.();
      if (this.socket === socket) {
        this.socket = undefined;
        this.theirs = undefined;
        this.connected = false;
      }
      // What waited for a dead connection is stale by now; Raft sends afresh.
      this.dropQueue();
      if (this.closed) return;
      this.retryLater();
    });
  }

  /** Dials again after the back-off if there is something to send by then. */
  private retryLater(): void {
    this.cancelRetry = this.clock.after(this.backoffMs, () => {
      this.cancelRetry = undefined;
      if (this.queue.length > 0) this.connect();
    });
    this.backoffMs = Math.min(this.backoffMs * 2, this.options.maxBackoffMs ?? 1000);
  }

  /** The protocol the peer's hello said on the current connection, once taken. */
  get protocol(): Version | undefined {
    return this.connected ? this.theirs : undefined;
  }

  /** Ends `socket` and leaves the peer alone for a while when its protocol is refused. */
  private leaveAlone(theirs: Version, socket: TLSSocket): boolean {
    const refusal = peerRefusal(this.options, theirs);
    if (refusal === undefined) return false;
    this.incompatibleUntil = this.clock.now() + INCOMPATIBLE_RETRY_MS;
    this.options.warn?.(
      `raft transport: node ${this.to} at ${this.address} ${refusal}: not sending to it for ${INCOMPATIBLE_RETRY_MS / 1000} s`,
    );
    socket.destroy();
    return true;
  }

  /** The peer refused this node: the cluster's protocol, `cluster`, is above this node's. */
  private refused(cluster: Version, socket: TLSSocket): void {
    this.incompatibleUntil = this.clock.now() + INCOMPATIBLE_RETRY_MS;
    this.options.warn?.(
      `raft transport: node ${this.to} at ${this.address} refused this node: the cluster's protocol is ${formatProtocol(cluster)}, this node ${formatProtocol(this.options.protocol)}: not sending to it for ${INCOMPATIBLE_RETRY_MS / 1000} s`,
    );
    socket.destroy();
    this.options.refusedBelow?.(cluster);
  }

  private dropQueue(): void {
    this.queue = [];
    this.queuedBytes = 0;
  }

  close(): void {
    this.closed = true;
    this.cancelRetry?.();
    this.cancelConnect?.();
    this.socket?.destroy();
    this.dropQueue();
  }
}
