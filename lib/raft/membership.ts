/**
 * Cluster configurations: applying one single-server change with validation, and the byte
 * encoding carried in membership log entries. Owns: pure config arithmetic and its codec.
 * Must not touch: the log, roles, messages.
 *
 * A membership entry may also carry one application command (the cluster's NodeRemove), applied
 * to the state machine at the entry's index: the configuration change and the application's
 * record of it then commit as one entry, so neither can exist without the other.
 */
import { decode, encode } from "cbor-x";
import type { Membership, MembershipChange, NodeId } from "./types.ts";

export const EMPTY_MEMBERSHIP: Membership = { voters: [], learners: [] };

export function isVoter(membership: Membership, id: NodeId): boolean {
  return membership.voters.includes(id);
}

export function isMember(membership: Membership, id: NodeId): boolean {
  return membership.voters.includes(id) || membership.learners.includes(id);
}

function isNodeId(value: unknown): value is NodeId {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0;
}

const without = (ids: readonly NodeId[], id: NodeId) => ids.filter((x) => x !== id);

/** Returns the configuration after `change`; throws a one-line Error (and changes nothing) if it is invalid. */
export function applyMembershipChange(
  membership: Membership,
  change: MembershipChange,
): Membership {
  const { id } = change;
  if (!isNodeId(id)) throw new Error(`invalid node id ${String(id)}: use a positive integer`);
  const { voters, learners } = membership;
  switch (change.op) {
    case "addLearner":
      if (isMember(membership, id)) throw new Error(`node ${id} is already a member`);
      return { voters, learners: [...learners, id] };
    case "promote":
      if (!learners.includes(id)) throw new Error(`node ${id} is not a learner; add it first`);
      return { voters: [...voters, id], learners: without(learners, id) };
    case "demote":
      if (!voters.includes(id)) throw new Error(`node ${id} is not a voter`);
      if (voters.length === 1) throw new Error(`node ${id} is the last voter; add another first`);
      return { voters: without(voters, id), learners: [...learners, id] };
    case "remove":
      if (!isMember(membership, id)) throw new Error(`node ${id} is not a member`);
      if (voters.length === 1 && voters[0] === id) {
        throw new Error(`node ${id} is the last voter; add another first`);
      }
      return { voters: without(voters, id), learners: without(learners, id) };
    default:
      throw new Error(`unknown membership operation ${String((change as { op: unknown }).op)}`);
  }
}

/** `command`, when given, is applied to the state machine with the change (see the header). */
export function encodeMembership(membership: Membership, command?: Uint8Array): Uint8Array {
  const pair = [membership.voters, membership.learners];
  return encode(command === undefined ? pair : [...pair, command]);
}

export function decodeMembership(bytes: Uint8Array): Membership {
  return decodeMembershipEntry(bytes).membership;
}

/** The configuration a membership entry holds and the command it carries, if any. */
export function decodeMembershipEntry(bytes: Uint8Array): {
  membership: Membership;
  command?: Uint8Array;
} {
  let value: unknown;
  try {
    value = decode(bytes);
  } catch {
    throw new Error("membership entry is not valid CBOR");
  }
  if (
    !Array.isArray(value) ||
    (value.length !== 2 && value.length !== 3) ||
    !value.slice(0, 2).every((ids) => Array.isArray(ids) && ids.every(isNodeId)) ||
    (value.length === 3 && !(value[2] instanceof Uint8Array))
  ) {
    throw new Error(
      "membership entry is not a [voters, learners] pair of node ids with an optional command",
    );
  }
  const membership = { voters: value[0] as NodeId[], learners: value[1] as NodeId[] };
  return value.length === 3 ? { membership, command: value[2] as Uint8Array } : { membership };
}
