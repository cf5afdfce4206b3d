/**
 * Recovering a survivor whose majority is gone for good (what etcd's --force-new-cluster does),
 * offline, from what its storage holds: replaying what it committed, and the entries that make it
 * the only voter. Owns: those two pure steps. Must not touch: I/O (the caller opens and saves the
 * storage), the application's commands (it hands in their bytes).
 *
 * Every entry in the survivor's log is kept, those after its commit index too: its persisted
 * commit index may lag what the cluster committed (a commit that only moves it is written
 * without an fsync), so an entry it holds may have been committed and acknowledged; keeping it
 * can only commit a write whose client never heard back, which linearizability allows. The new
 * configuration names the survivor alone, in a term above any in its log, followed by the
 * application's commands; all of it is committed at once, as a one-voter cluster commits what
 * it writes.
 */

import type { RaftRestore } from "./core.ts";
import { decodeMembershipEntry, EMPTY_MEMBERSHIP, encodeMembership } from "./membership.ts";
import type { Entry, HardState, Membership, NodeId, StateMachine } from "./types.ts";

/** Restores the snapshot into `machine` and applies every committed entry, as the driver would. */
export function replayCommitted(restored: RaftRestore, machine: StateMachine): Membership {
  let membership = restored.snapshot?.meta.membership ?? EMPTY_MEMBERSHIP;
  if (restored.snapshot) machine.restore(restored.snapshot.data);
  for (const entry of restored.entries) {
    if (entry.index > restored.hardState.commit) break;
    if (entry.kind === "command") machine.apply(entry.index, entry.data);
    if (entry.kind !== "membership") continue;
    const decoded = decodeMembershipEntry(entry.data);
    membership = decoded.membership;
    if (decoded.command) machine.apply(entry.index, decoded.command);
  }
  return membership;
}

export interface Recovery {
  /** The entries to save: the new configuration, then `commands`, all committed. */
  readonly entries: readonly Entry[];
  readonly hardState: HardState;
  /** The last index kept from before: the end of the survivor's log. */
  readonly kept: number;
  /** Of those, the entries after its last known commit index, committed now. */
  readonly uncommitted: number;
}

/**
 * What makes `self` the only voter, keeping every entry of its log; `commands` follow it.
 * Refused while the survivor is rebuilding a log it lost (HardState.recovering): it may lack
 * entries the cluster committed, and alone it would never get them back.
 */
export function recoverAlone(
  restored: RaftRestore,
  self: NodeId,
  commands: readonly Uint8Array[],
): Recovery {
  const { hardState } = restored;
  if (hardState.recovering) {
    throw new Error(
      "this node lost its log (its snapshot could not be restored) and has not caught up since, so it may lack committed entries: recover the cluster from another survivor",
    );
  }
  const last = restored.entries.at(-1);
  const kept = last?.index ?? restored.snapshot?.meta.index ?? 0;
  const term = Math.max(hardState.term, last?.term ?? 0) + 1;
  const data = [encodeMembership({ voters: [self], learners: [] }), ...commands];
  const entries: Entry[] = data.map((bytes, i) => ({
    index: kept + 1 + i,
    term,
    kind: i === 0 ? "membership" : "command",
    data: bytes,
  }));
  return {
    entries,
    hardState: { term, vote: self, commit: kept + entries.length },
    kept,
    uncommitted: Math.max(0, kept - hardState.commit),
  };
}
