/**
 * Majority arithmetic over a voter set: the committed index from match indexes, election results.
 * Owns: pure counting. Must not touch: roles, logs, messages.
 */
import type { NodeId } from "./types.ts";

export function majority(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/**
 * The highest value that a majority of voters has reached (match indexes give the commit index,
 * acknowledged read sequences give the confirmed read). An empty voter set reaches nothing.
 */
export function quorumIndex(voters: readonly NodeId[], reached: (id: NodeId) => number): number {
  const n = voters.length;
  if (n === 0) return 0;
  if (n === 1) return reached(voters[0]!);
  const values = new Array<number>(n);
  for (let i = 0; i < n; i++) values[i] = reached(voters[i]!);
  values.sort((a, b) => b - a);
  return values[majority(n) - 1]!;
}

export type VoteResult = "won" | "lost" | "pending";

/** Counts only voters' answers; a majority of grants wins, a majority of rejections loses. */
export function voteResult(
  voters: readonly NodeId[],
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  let granted = 0;
  let rejected = 0;
  for (const id of voters) {
    const vote = votes.get(id);
    if (vote === true) granted++;
    else if (vote === false) rejected++;
  }
  const needed = majority(voters.length);
  if (granted >= needed) return "won";
  if (rejected >= needed) return "lost";
  return "pending";
}
