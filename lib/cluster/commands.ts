/**
 * The commands of the cluster's Raft log, their CBOR encoding, and the results apply() hands back.
 * Owns: the command vocabulary and its wire validation. Must not touch: state changes (fsm.ts),
 * I/O, clocks: every time a command needs travels inside it, taken by the proposer.
 *
 * A decoded command is rebuilt field by field from the validated input, so nothing unknown or
 * malformed ever reaches the state, and the same bytes decode to the same command on every node.
 * Workload commands share the log; lib/workloads/wire.ts validates and rebuilds them.
 */

import { Encoder } from "cbor-x";
import { parseCidr } from "../mesh/plan.ts";
import type { NodeId, RaftNode } from "../raft/types.ts";
import { type Checked, checkFields, type Rule } from "../shared/fields.ts";
import type { WorkloadCommand, WorkloadErrorCode } from "../workloads/state.ts";
import { isWorkloadCommandType, parseWorkloadCommand } from "../workloads/wire.ts";
import type { MeshMode, NodeRecord, NodeRegistration } from "./state.ts";
import {
  checkMesh,
  checkName,
  checkSha256Hex,
  pickRegistration,
  REGISTRATION_RULES,
  registrationProblem,
} from "./validate.ts";

export interface ClusterInit {
  readonly type: "ClusterInit";
  readonly clusterId: string;
  readonly name?: string;
  readonly createdAt: number;
  readonly mesh: MeshMode;
  readonly meshCidr: string;
  readonly tokenHash: string;
  /** The provider's API token travels once, here, and is kept as a cluster secret. */
  readonly provider?: { readonly name: string; readonly token: string };
}

export interface NodeRegister extends NodeRegistration {
  readonly type: "NodeRegister";
  readonly at: number;
}

export interface NodeDown {
  readonly type: "NodeDown";
  readonly id: NodeId;
  readonly at: number;
}

export interface NodeUp {
  readonly type: "NodeUp";
  readonly id: NodeId;
  readonly at: number;
}

export interface NodeRemove {
  readonly type: "NodeRemove";
  readonly id: NodeId;
  readonly at: number;
}

export interface TokenRotate {
  readonly type: "TokenRotate";
  readonly tokenHash: string;
}

/** Commands about the cluster itself: its configuration and its nodes. */
export type ClusterCommand =
  | ClusterInit
  | NodeRegister
  | NodeDown
  | NodeUp
  | NodeRemove
  | TokenRotate;

export type Command = ClusterCommand | WorkloadCommand;

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
      /** NodeRegister, NodeDown, NodeUp, NodeRemove: the node's record after the command. */
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

const checkTime: Rule = (value, field) =>
  Number.isSafeInteger(value) && (value as number) >= 0
    ? undefined
    : `${field} is not a time: expected milliseconds since the epoch`;

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
    return `${field}: ${(error as Error).message}`;
  }
};

const checkSecret: Rule = (value, field) =>
  typeof value === "string" && value.length > 0 && value.length <= 4096
    ? undefined
    : `${field} must be a non-empty string of at most 4096 characters`;

const optional =
  (rule: Rule): Rule =>
  (value, field) =>
    value === undefined ? undefined : rule(value, field);

const RULES: Readonly<Record<ClusterCommand["type"], Readonly<Record<string, Rule>>>> = {
  ClusterInit: {
    clusterId: checkClusterId,
    name: optional(checkName),
    createdAt: checkTime,
    mesh: checkMesh,
    meshCidr: checkCidr,
    tokenHash: checkSha256Hex,
  },
  NodeRegister: { ...REGISTRATION_RULES, at: checkTime },
  NodeDown: { id: checkNodeId, at: checkTime },
  NodeUp: { id: checkNodeId, at: checkTime },
  NodeRemove: { id: checkNodeId, at: checkTime },
  TokenRotate: { tokenHash: checkSha256Hex },
};

const PROVIDER_RULES = { name: checkName, token: checkSecret };

/** Decodes and validates; never throws. */
export function decodeCommand(bytes: Uint8Array): Checked<Command> {
  let raw: unknown;
  try {
    raw = decodeCbor(bytes);
  } catch {
    return fail("command", "command is not valid CBOR");
  }
  if (isWorkloadCommandType((raw as { type?: unknown } | null)?.type)) {
    return parseWorkloadCommand(raw);
  }
  if (
    typeof raw !== "object" ||
    raw === null ||
    !Object.hasOwn(RULES, String((raw as { type?: unknown }).type))
  ) {
    return fail("type", "command has no known type");
  }
  const input = raw as Record<string, unknown>;
  const type = input.type as ClusterCommand["type"];
  const problem =
    type === "NodeRegister"
      ? registrationProblem(input, RULES[type])
      : (checkFields(input, RULES[type]) ?? providerProblem(type, input));
  if (problem) return { ok: false, problem };
  return { ok: true, value: rebuild(type, input) };
}

function providerProblem(type: ClusterCommand["type"], input: Record<string, unknown>) {
  return type === "ClusterInit" && input.provider !== undefined
    ? checkFields(input.provider, PROVIDER_RULES, "provider.")
    : undefined;
}

/** Copies exactly the validated fields, dropping anything else the bytes carried. */
function rebuild(type: ClusterCommand["type"], input: Record<string, unknown>): ClusterCommand {
  const pick = <T>(key: string) => input[key] as T;
  switch (type) {
    case "ClusterInit": {
      const provider = input.provider as { name: string; token: string } | undefined;
      return {
        type,
        clusterId: pick("clusterId"),
        ...(input.name === undefined ? {} : { name: pick<string>("name") }),
        createdAt: pick("createdAt"),
        mesh: pick("mesh"),
        meshCidr: pick("meshCidr"),
        tokenHash: pick("tokenHash"),
        ...(provider ? { provider: { name: provider.name, token: provider.token } } : {}),
      };
    }
    case "NodeRegister":
      return { type, ...pickRegistration(input as unknown as NodeRegistration), at: pick("at") };
    case "NodeDown":
    case "NodeUp":
    case "NodeRemove":
      return { type, id: pick("id"), at: pick("at") };
    case "TokenRotate":
      return { type, tokenHash: pick("tokenHash") };
  }
}

function fail(field: string, error: string): Checked<never> {
  return { ok: false, problem: { field, error } };
}
