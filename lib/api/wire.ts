/**
 * The JSON exchanged over Mill's HTTP APIs: request and response bodies, limits, headers.
 * Owns: the wire contract that clients (the CLI, joining nodes, members) and servers share.
 * Must not touch: behaviour.
 *
 * The join exchange (public port, TLS, `Authorization: Bearer <token secret>`):
 * 1. POST /v1/join  JoinRequest → 200 JoinResponse. The leader commits NodeRegister (id, mesh
 *    address) and answers with everything the joiner needs to bring up WireGuard and Raft. A
 *    follower forwards to the leader. Retrying with the same body is answered from the committed
 *    registration and never commits twice.
 * 2. The joiner configures its mesh, starts its Raft transport with the given peers (as a
 *    non-member), then POST /v1/join/confirm  JoinConfirmRequest → 200 JoinConfirmResponse once
 *    the leader has added it as a learner, seen it catch up, and committed its promotion to
 *    voter. Retrying is harmless: adding an existing voter is a no-op.
 * 3. If a step after 1 fails, the joiner takes its registration back: POST /v1/join/withdraw
 *    JoinWithdrawal (lib/cluster/validate.ts, signed with its node key) → 200 JoinWithdrawResponse.
 *    Only a registration still joining, and not a Raft voter, is withdrawn (409 otherwise).
 * Both the request (`protocol`) and the answer carry the protocol version the sender speaks
 * (lib/shared/protocol.ts); each side refuses the other's major version, naming both.
 */

import type { MeshMode } from "../cluster/validate.ts";
import type { PeerEntry, ShownStatus } from "../cluster/views.ts";
import type { NodeId } from "../raft/types.ts";
import type { DiskSample, NodeResources } from "../shared/node-facts.ts";
import type { ProtocolVersion } from "../shared/protocol.ts";
import type { ReportedStatus } from "../workloads/commands.ts";
import type { DrainProgress, WorkloadProgress } from "../workloads/scheduler.ts";
import type { AllocationDetail } from "../workloads/state.ts";
import type { PsRow } from "../workloads/view.ts";
import type { TlsIdentity } from "./deps.ts";

/** Larger bodies are refused with 413, whether announced by Content-Length or not. */
export const MAX_BODY_BYTES = 64 * 1024;

/** Set on a request a follower forwards to the leader, so it is never forwarded twice. */
export const FORWARDED_HEADER = "x-mill-forwarded";

/** Internal API: the id of the member whose secret is in the Authorization header. */
export const MEMBER_HEADER = "x-mill-node";

export interface ErrorBody {
  /** One line: what is wrong and what to do. */
  readonly error: string;
  /** The request field at fault, for 400 and 409. */
  readonly field?: string;
}

export interface RaftInfo {
  readonly leader: NodeId;
  readonly term: number;
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

export interface JoinResponse {
  readonly cluster: {
    readonly id: string;
    readonly name?: string;
    readonly mesh: MeshMode;
    readonly meshCidr: string;
  };
  /** The joiner's own registration. */
  readonly node: { readonly id: NodeId; readonly name: string; readonly meshAddress: string };
  readonly peersVersion: number;
  /** Every member, the joiner included. */
  readonly peers: readonly PeerEntry[];
  readonly raft: RaftInfo;
  /** Serve the public API with this, so clients pinning the token's fingerprint reach any node. */
  readonly tls: TlsIdentity;
  /** The protocol the answering node speaks; absent from nodes before joins carried one (1.0). */
  readonly protocol?: ProtocolVersion;
}

export interface JoinConfirmRequest {
  readonly requestId: string;
  readonly nodeId: NodeId;
  readonly wgPublicKey: string;
}

export interface JoinConfirmResponse {
  readonly node: { readonly id: NodeId; readonly name: string };
  readonly raft: RaftInfo;
}

/** POST /v1/join/withdraw: the registration is gone (`withdrawn` is false when it already was). */
export interface JoinWithdrawResponse {
  readonly node: { readonly id: NodeId; readonly name: string };
  readonly withdrawn: boolean;
}

/**
 * POST /v1/internal/heartbeat takes this: what the node measured on its own host. Each field is
 * optional and checked apart; a missing or malformed one is ignored, never the heartbeat.
 */
export interface HeartbeatRequest {
  /** Its data-dir disk. */
  readonly disk?: DiskSample;
  /** Its cores and memory, which replace its registration's claim (lib/cluster/resources.ts). */
  readonly resources?: NodeResources;
}

/** POST /v1/internal/heartbeat answers with this. */
export interface HeartbeatResponse {
  readonly leader: NodeId;
  readonly term: number;
  /** A member whose applied peer list is older pulls GET /v1/internal/peers (a PeerList). */
  readonly peersVersion: number;
  /** Milliseconds since the leader heard each node, by id: followers show these in status. */
  readonly heardAgoMs: Readonly<Record<string, number>>;
  /** Each node's data-dir disk from its last heartbeat, by id (absent from older leaders). */
  readonly disks?: Readonly<Record<string, DiskSample>>;
}

/**
 * Workloads (public port, cluster token). POST /v1/workloads takes a WorkloadRequest
 * (lib/workloads/spec.ts) and answers when the spec and its first step are committed; the client
 * then polls GET /v1/workloads/NAME until `progress.done`. A follower forwards writes to the
 * leader. Bad input is 400 naming the field; a cluster without room for every replica is 409
 * naming the shortfall; in both cases nothing is committed.
 */
export interface WorkloadRunResponse {
  readonly name: string;
  /** False when the same spec was already committed: nothing changed. */
  readonly changed: boolean;
  readonly progress: WorkloadProgress;
}

/** GET /v1/workloads/NAME: how far the workload is, and its allocations. */
export interface WorkloadStatusResponse {
  readonly progress: WorkloadProgress;
  readonly allocations: readonly PsRow[];
}

/** GET /v1/allocations: every allocation, for `mill ps`; `now` is the answering node's clock. */
export interface AllocationsResponse {
  readonly now: number;
  readonly allocations: readonly PsRow[];
}

/** DELETE /v1/workloads/NAME: the workload is forgotten; its nodes stop its processes. */
export interface WorkloadStopResponse {
  readonly name: string;
  /** Allocations that were live and are being stopped. */
  readonly stopping: number;
}

/**
 * POST /v1/internal/allocation-status (member secret): a node reports an allocation it runs.
 * The leader commits it as AllocationStatus for the reporting member; 409 when the allocation is
 * gone or belongs to another node (the node stops its process at its next reconcile).
 */
export interface AllocationStatusRequest extends AllocationDetail {
  readonly id: number;
  readonly status: ReportedStatus;
  readonly restarts: number;
}

/**
 * POST /v1/nodes/NAME/drain (answered once NodeDrain is committed) and GET /v1/nodes/NAME/drain:
 * the node's live allocations and those that cannot move now. The client polls the GET until
 * `remaining` is empty (drained) or every remaining allocation is `blocked` (no move possible).
 */
export interface DrainResponse extends DrainProgress {
  readonly name: string;
  readonly status: ShownStatus;
  /** False once the node was undrained. */
  readonly draining: boolean;
}

/** POST /v1/nodes/NAME/undrain: the node takes new work again. */
export interface UndrainResponse {
  readonly name: string;
  /** False when it was not draining. */
  readonly changed: boolean;
}

/**
 * DELETE /v1/nodes/NAME[?force=true] (answered by the leader once the voter removal and
 * NodeRemove committed, as one entry): the node is out of the cluster for good. 409 names why it
 * was refused (live allocations, or the voters left would lack a quorum) and the fix. When the
 * leader itself is removed it hands leadership over first; a 503 then means "retry".
 */
export interface RemoveResponse {
  readonly name: string;
  readonly id: NodeId;
  /** Live allocations it held (only with force), rescheduled as on NodeDown. */
  readonly rescheduled: number;
}

/**
 * GET /v1/members/ID (cluster token): whether node ID is a member or was removed, as this node
 * has applied it (a removal is final, so "removed" never turns back). 404 for an id never seen.
 */
export interface MemberStatusResponse {
  readonly id: NodeId;
  readonly member: boolean;
  readonly removed: boolean;
}

/**
 * POST /v1/members/ID/removal (no token) with `{ nonce }`: whether node ID was removed, as the
 * answering member has applied it, signed by that member's node key over `removalStatement`
 * (lib/cluster/validate.ts). A node asks this about itself when its heartbeats fail
 * (lib/node/removal.ts); it needs no token and no pinned TLS, because it trusts the signature
 * only, checked against the signer's key in its own state. 404 for an id never seen.
 */
export interface RemovalAnswer {
  readonly id: NodeId;
  readonly removed: boolean;
  /** The asker's nonce, echoed; the signature covers it. */
  readonly nonce: string;
  /** The answering member's id, whose record's nodeKey names `signerCert`. */
  readonly signer: NodeId;
  /** The answering member's node certificate (PEM). */
  readonly signerCert: string;
  /** base64 ECDSA signature of removalStatement(cluster id, id, removed, nonce, signer). */
  readonly signature: string;
}

/** POST /v1/token/rotate (cluster token, answered by the leader): the new token, once committed. */
export interface TokenRotateResponse {
  readonly token: string;
}

/**
 * POST /v1/internal/token (member secret) takes `{ tokenHash }`: the token with that hash and the
 * TLS identity it pins, private key included.
 */
export interface TokenShareResponse {
  readonly token: string;
  readonly tls: TlsIdentity;
}

/** GET /v1/debug/state: where this node's log is and a digest of its applied state. */
export interface DebugStateResponse {
  readonly commit: number;
  readonly applied: number;
  /** Hex SHA-256 of the state machine's deterministic snapshot: equal on nodes that agree. */
  readonly stateSha256: string;
}
