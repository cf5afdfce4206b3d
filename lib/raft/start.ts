/**
 * startRaftNode: a Driver over the real I/O (segment-file storage, the TCP transport, system
 * time). Everything Raft decides and every order of persist/send/apply lives in driver.ts; this
 * file only opens the pieces and wires inbound messages to the driver.
 * Owns: the real node's assembly and its teardown on a failed start. Must not touch: the Ready
 * loop (driver.ts), Raft decisions (core.ts).
 */

import { systemClock } from "../shared/clock.ts";
import { Driver, type DriverOptions } from "./driver.ts";
import { openStorage, type StorageOptions } from "./storage/storage.ts";
import {
  startTransport,
  type Transport,
  type TransportOptions,
  type TransportTls,
} from "./transport/transport.ts";
import type { NodeId, RaftNode } from "./types.ts";

export interface RaftNodeOptions extends DriverOptions {
  /** Where this node's log and snapshots live (created 0700). */
  readonly dir: string;
  /** Where to listen for peers; port 0 picks a free one (see RunningRaftNode.port). */
  readonly host: string;
  readonly port: number;
  /** A peer's "host:port" (the cluster layer's address book). */
  readonly peers: (id: NodeId) => string | undefined;
  /** Whether to take in messages from `from`; the others are dropped (a removed node's). */
  readonly admit?: (from: NodeId) => boolean;
  /** Sources the transport refuses before anything else (TransportOptions.refuseSource). */
  readonly refuseSource?: TransportOptions["refuseSource"];
  /** This node's key and the members' keys, for the transport's mutual TLS. */
  readonly tls: TransportTls;
  /** The protocol version the transport announces (lib/shared/protocol.ts). */
  readonly protocol: TransportOptions["protocol"];
  /** The protocol the cluster committed (TransportOptions.clusterProtocol). */
  readonly clusterProtocol?: TransportOptions["clusterProtocol"];
  /** A peer refused this node as below the cluster's protocol (TransportOptions.refusedBelow). */
  readonly refusedBelow?: TransportOptions["refusedBelow"];
  /** How the transport opens connections to peers (TransportOptions.dial). */
  readonly dial?: TransportOptions["dial"];
  readonly storage?: StorageOptions;
}

export interface RunningRaftNode extends RaftNode {
  /** The port the transport listens on. */
  readonly port: number;
  /** The protocol the current connection to `id` said in its hello (Transport.peerProtocol). */
  peerProtocol(id: NodeId): TransportOptions["protocol"] | undefined;
}

export async function startRaftNode(options: RaftNodeOptions): Promise<RunningRaftNode> {
  const storage = await openStorage(options.dir, options.storage);
  let transport: Transport | undefined;
  try {
    let driver: Driver | undefined;
    transport = await startTransport({
      id: options.id,
      host: options.host,
      port: options.port,
      resolve: options.peers,
      tls: options.tls,
      refuseSource: options.refuseSource,
      protocol: options.protocol,
      clusterProtocol: options.clusterProtocol,
      refusedBelow: options.refusedBelow,
      ...(options.dial ? { dial: options.dial } : {}),
      // Only the leader this node follows may send a large frame (a snapshot).
      largeFramesFrom: (from) => driver?.status().leader === from,
      warn: options.warn ?? console.warn,
      // Messages that arrive before the driver exists are dropped: Raft resends.
      onMessage: (message) => {
        if (options.admit?.(message.from) !== false) driver?.receive(message);
      },
    });
    driver = await Driver.open(options, { storage, transport, clock: systemClock });
    const dialled = transport;
    return Object.assign(driver, {
      port: transport.port,
      peerProtocol: (id: NodeId) => dialled.peerProtocol(id),
    });
  } catch (error) {
    await transport?.close();
    await storage.close();
    throw error;
  }
}
