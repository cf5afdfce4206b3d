/**
 * What the HTTP APIs need from the running node, as an interface, so both apps can be tested with
 * fakes and wired by the node runtime. Owns: that contract. Must not touch: implementations.
 */

import type { Commit, CommitRemoval, ExpireJoin } from "../cluster/commands.ts";
import type { HeartbeatTable } from "../cluster/health.ts";
import type { ClusterState } from "../cluster/state.ts";
import type { PeerObservation } from "../cluster/views.ts";
import type { ClusterCredentials } from "../identity/rotation.ts";
import type { NodeId, RaftNode } from "../raft/types.ts";
import type { DiskSample } from "../shared/node-facts.ts";
import type { LogChunk, LogRequest } from "../workloads/allocation-dirs.ts";

/** The part of a RaftNode the APIs use besides committing (`commit` below). */
export type ApiRaft = Pick<RaftNode, "status" | "readBarrier" | "addVoter" | "transferLeadership">;

/** The cluster's TLS identity (PEM), handed to joiners so every node serves the same one. */
export interface TlsIdentity {
  readonly certPem: string;
  readonly keyPem: string;
}

/**
 * The token and TLS identity a node keeps in its data dir; the secret and the private key never
 * enter the Raft log.
 */
export interface TokenCopy {
  /** The full token whose secret hashes to `tokenHash`, and the identity it pins, if held. */
  current(tokenHash: string): ClusterCredentials | undefined;
  /**
   * Makes a new token and identity and keeps them on disk before `propose` commits their hash
   * and fingerprint, so a committed hash is never orphaned; once committed, this node saves and
   * serves them before this resolves.
   */
  rotate<T>(
    propose: (next: ClusterCredentials) => Promise<T>,
  ): Promise<{ readonly next: ClusterCredentials; readonly proposed: T }>;
}

export interface ApiDeps {
  readonly raft: ApiRaft;
  /**
   * Commits a command and answers what the state machine decided, with the deadline built in:
   * rejects with DeadlineError after `commitTimeoutMs`, NotLeaderError or ProposalLostError when
   * this node cannot commit it (the apps answer all three with 503).
   */
  readonly commit: Commit;
  /** Commits a voter removal and its NodeRemove as one entry, with the same deadline and errors. */
  readonly commitRemoval: CommitRemoval;
  /**
   * Removes a registration whose joiner withdrew it: its learner entry, if it got that far, and
   * its NodeRemove as one entry, with the same deadline; undefined, with nothing committed, when
   * the node became a voter first.
   */
  readonly removeJoin: ExpireJoin;
  /** The local ClusterFsm's current state. */
  state(): ClusterState;
  /** Milliseconds since the epoch. */
  now(): number;
  /**
   * Sends `request` to the current leader's public API and returns its answer. Rejects when the
   * leader is unknown or unreachable. The request already carries the forwarded marker.
   */
  forwardToLeader(request: Request): Promise<Response>;
  tlsIdentity(): TlsIdentity;
  /**
   * This node's own certificate and key (node.crt), which sign its answers to a node asking
   * whether it was removed (POST /v1/members/ID/removal).
   */
  readonly nodeCertificate: TlsIdentity;
  /** The leader's in-memory heartbeat table (internal API writes, the node's watchdog reads). */
  readonly heartbeats: HeartbeatTable;
  /** Milliseconds since the leader last heard node `id`, where this node knows it. */
  heartbeatAge(id: number): number | undefined;
  /** Node `id`'s data-dir disk: this node's measured now, others' from their heartbeats. */
  diskOf(id: number): DiskSample | undefined;
  /** This node's WireGuard peers by public key; undefined when the mesh is off. */
  meshPeers(): ReadonlyMap<string, PeerObservation> | undefined;
  /**
   * Runs `task` after every earlier one passed here has finished. Each workload plan is made and
   * proposed inside it (`mill run`, `mill stop`, the leader's reconcile tick), so no two plans are
   * made over the same state and place the same replica twice.
   */
  serializePlans<T>(task: () => Promise<T>): Promise<T>;
  /**
   * A chunk of allocation `id`'s output from node `node`, which holds it: read here when `node`
   * is this node, else asked of it over the internal API. Undefined when that node has no log for
   * it; rejects when the node cannot be reached.
   */
  allocationLog(node: NodeId, id: number, request: LogRequest): Promise<LogChunk | undefined>;
  /** Deterministic bytes of this node's applied cluster state (ClusterFsm.snapshot). */
  stateSnapshot(): Uint8Array;
  /** This node's copy of the cluster token, for rotation and hand-over (see token.ts). */
  readonly tokens: TokenCopy;
  /** How long to wait for a commit or a read barrier before answering 503. */
  readonly commitTimeoutMs: number;
  /** Unexpected failures (answered as a bare 500); never called with secrets. */
  onError(error: unknown): void;
  /** A refusal the operator should see in the node's log (one line, never a secret). */
  warn(line: string): void;
}
