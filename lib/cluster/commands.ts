/**
 * The commands of the cluster's Raft log, their CBOR encoding, and the results apply() hands back.
 * Owns: the command vocabulary and its wire validation. Must not touch: state changes (fsm.ts),
 * I/O, clocks: every time a command needs travels inside it, taken by the proposer.
 *
 * Each command is declared once, as a schema (lib/shared/schema.ts): its type, its parser and its
 * rebuilder derive from it. A decoded command is rebuilt field by field from the validated input,
 * so nothing unknown or malformed ever reaches the state, and the same bytes decode to the same
 * command on every node. Workload commands share the log; lib/workloads/commands.ts declares them.
 * Encoding is plain CBOR of the object the proposer built: test/unit/cluster/wire-format.test.ts
 * holds every kind's bytes, which existing logs depend on.
 */

import { Encoder } from "cbor-x";
import { parseCidr } from "../mesh/plan.ts";
import type { NodeId, RaftNode } from "../raft/types.ts";
import { errorMessage } from "../shared/errors.ts";
import { type Checked, checkTime, type Rule } from "../shared/fields.ts";
import { type Infer, leaf, object, optional, tagged } from "../shared/schema.ts";
import { workloadCommand } from "../workloads/commands.ts";
import type { WorkloadErrorCode } from "../workloads/state.ts";
import type { NodeRecord } from "./state.ts";
import {
  checkCertificateFingerprint,
  checkMesh,
  checkName,
  checkSha256Hex,
  checkVersion,
  type MeshMode,
  nodeRegistration,
  nodeResources,
  protocolVersion,
} from "./validate.ts";

const checkNodeId: Rule = (value, field) =>
  Number.isSafeInteger(value) && (value as number) > 0
    ? undefined
    : `${field} is not a node id: expected a positive integer`;

const checkClusterId: Rule = (value, field) =>
  typeof value === "string" && /^[A-Za-z0-9_-]{1,64}$/.test(value)
    ? undefined
    : `${field} is not a cluster id: expected 1-64 letters, digits, '-' or '_'`;

const checkCidr: Rule = (value, field) => {
  try {
    parseCidr(value as string);
    return undefined;
  } catch (error) {
    return `${field}: ${errorMessage(error)}`;
  }
};

const checkSecret: Rule = (value, field) =>
  typeof value === "string" && value.length > 0 && value.length <= 4096
    ? undefined
    : `${field} must be a non-empty string of at most 4096 characters`;

const checkTrue: Rule = (value, field) =>
  value === true ? undefined : `${field} must be true when present`;

const at = leaf<number>(checkTime);
const nodeEvent = { id: leaf<NodeId>(checkNodeId), at };

/** Every command of the log: the cluster's own (its configuration, its nodes), then workloads'. */
const command = tagged(
  {
    ClusterInit: {
      clusterId: leaf<string>(checkClusterId),
      name: optional(leaf<string>(checkName)),
      createdAt: at,
      mesh: leaf<MeshMode>(checkMesh),
      meshCidr: leaf<string>(checkCidr),
      tokenHash: leaf<string>(checkSha256Hex),
      /**
       * The cloud provider. Its API token stays in the init node's data dir (provider.token,
       * 0600) and never enters the log; `token` is only read from logs written before that.
       */
      provider: optional(
        object({ name: leaf<string>(checkName), token: optional(leaf<string>(checkSecret)) }),
      ),
    },
    NodeRegister: {
      ...nodeRegistration.shape,
      at,
      /**
       * A join through POST /v1/join: the node waits, "joining", until it is a Raft voter. Absent
       * for the init node (a voter already) and in logs written before joins were confirmed, where
       * every registration was ready at once: replaying them gives the state they gave.
       */
      joining: optional(leaf<true>(checkTrue)),
    },
    NodeDown: nodeEvent,
    NodeUp: nodeEvent,
    NodeRemove: nodeEvent,
    /** `mill drain`: nothing new goes to the node; the leader moves its replicas off. */
    NodeDrain: nodeEvent,
    /** A node runs another Mill version than its record says (after a restart on a new build). */
    NodeVersion: { id: leaf<NodeId>(checkNodeId), version: leaf<string>(checkVersion) },
    /**
     * The cores and memory a node measured on its own host and sent in its heartbeats, which
     * replace its registration's claim; the leader commits one only when they differ.
     */
    NodeResources: { id: leaf<NodeId>(checkNodeId), resources: nodeResources },
    /** `mill undrain`: the node takes new work again; nothing moves back by itself. */
    NodeUndrain: nodeEvent,
    /**
     * `mill token rotate`: the new token's hash and the fingerprint of the new TLS identity it
     * pins (public: clients see the certificate). `fingerprint` is absent in logs written before
     * rotation re-keyed the identity.
     */
    TokenRotate: {
      tokenHash: leaf<string>(checkSha256Hex),
      fingerprint: optional(leaf<string>(checkCertificateFingerprint)),
    },
    /**
     * The protocol minor the whole cluster speaks, raised by the leader once every member showed
     * it (protocol-gate.ts); commands newer than the baseline wait for it. Never lowered.
     */
    ClusterProtocol: protocolVersion.shape,
    ...workloadCommand.cases,
  },
  "command has no known type",
);

export type Command = Infer<typeof command>;
export type ClusterInit = Extract<Command, { type: "ClusterInit" }>;
export type NodeRegister = Extract<Command, { type: "NodeRegister" }>;
/** What the watchdog proposes: a node's status changes, and the end of a join never confirmed. */
export type NodeStatusChange = Extract<Command, { type: "NodeDown" | "NodeUp" | "NodeRemove" }>;
/** What the watchdog proposes when a node's heartbeats measure other resources than its record. */
export type NodeResourcesChange = Extract<Command, { type: "NodeResources" }>;
/** What the watchdog proposes once every member speaks a newer protocol minor. */
export type ClusterProtocolRaise = Extract<Command, { type: "ClusterProtocol" }>;

export type ApplyErrorCode =
  | "invalid"
  | "uninitialised"
  | "conflict"
  | "unknown-node"
  | "full"
  | WorkloadErrorCode;

/** What apply() returns to the proposer. Never thrown: a refused command changes nothing. */
export type ApplyResult =
  | {
      readonly ok: true;
      /** False when the command was a repeat that left the state as it was. */
      readonly changed: boolean;
      /** NodeRegister and the node status commands: the node's record after the command. */
      readonly node?: NodeRecord;
      /** Commands the leader proposes next, decided by a hook (NodeDown → rescheduling). */
      readonly followUps?: readonly Command[];
      /** Workload commands: ids of the allocations created, in placement order. */
      readonly placed?: readonly number[];
      /** Workload commands: placements skipped because their node was no longer ready or full. */
      readonly unplaced?: number;
    }
  | {
      readonly ok: false;
      readonly code: ApplyErrorCode;
      readonly error: string;
      readonly field?: string;
    };

const cbor = new Encoder({ useRecords: false, mapsAsObjects: true });

/** CBOR with maps as plain objects; also the snapshot encoding (fsm.ts). */
export function encodeCbor(value: unknown): Uint8Array {
  return cbor.encode(value);
}

export function decodeCbor(bytes: Uint8Array): unknown {
  return cbor.decode(bytes);
}

export function encodeCommand(command: Command): Uint8Array {
  return encodeCbor(command);
}

/** Decodes and validates; never throws. */
export function decodeCommand(bytes: Uint8Array): Checked<Command> {
  let raw: unknown;
  try {
    raw = decodeCbor(bytes);
  } catch {
    return { ok: false, problem: { field: "command", error: "command is not valid CBOR" } };
  }
  return command.parse(raw, "");
}

/** Commits one command and resolves with what apply() answered for it. */
export type Commit = (command: Command) => Promise<ApplyResult>;

/**
 * Commits through a Raft node whose state machine is a ClusterFsm: Raft resolves a proposal with
 * whatever apply() returned, and ClusterFsm returns an ApplyResult for every entry, so this is
 * the one place that names the type of that answer.
 */
export function commitThrough(raft: Pick<RaftNode, "propose">): Commit {
  return (command) => raft.propose(encodeCommand(command)) as Promise<ApplyResult>;
}

/** Commits a voter's removal and its NodeRemove as one Raft entry; resolves like a Commit. */
export type CommitRemoval = (
  removal: Extract<Command, { type: "NodeRemove" }>,
) => Promise<ApplyResult>;

/** As commitThrough, for removals: the entry's command is applied by the same ClusterFsm. */
export function commitRemovalThrough(raft: Pick<RaftNode, "removeServer">): CommitRemoval {
  return (removal) => raft.removeServer(removal.id, encodeCommand(removal)) as Promise<ApplyResult>;
}

/**
 * Removes an expired join: its learner entry, if it got that far, and its NodeRemove as one Raft
 * entry; resolves undefined, with nothing proposed, when the node became a voter first.
 */
export type ExpireJoin = (
  removal: Extract<Command, { type: "NodeRemove" }>,
) => Promise<ApplyResult | undefined>;

/** As commitRemovalThrough, through RaftNode.removeLearner. */
export function expireJoinThrough(raft: Pick<RaftNode, "removeLearner">): ExpireJoin {
  return (removal) =>
    raft.removeLearner(removal.id, encodeCommand(removal)) as Promise<ApplyResult | undefined>;
}
