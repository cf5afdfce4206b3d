/**
 * Which processes belong to an allocation where there is no cgroup to ask: everything in the
 * session or process group its first process leads, every descendant of those (a `setsid` child
 * leaves the session but keeps its parent), and every process seen as a member before (by pid and
 * start time, so one that was reparented to init after its parent died stays a member).
 * Owns: that decision over a process table. Must not touch: /proc, signals (process-host.ts).
 *
 * Known limit, said in the README: a process that double-forks away between two looks (the
 * supervisor looks every second and at every stop) is not seen. cgroup v2 has no such gap.
 */
import type { ProcessEntry } from "./process-host.ts";

/** A process identity that survives pid reuse. */
export const processKey = (entry: Pick<ProcessEntry, "pid" | "startTime">): string =>
  `${entry.pid}@${entry.startTime}`;

/**
 * The allocation's processes in `table`, whose first process (session leader) is `leader`. With
 * `uid`, only processes of that user count: a reused pid never drags in another user's process.
 */
export function sessionMembers(
  table: readonly ProcessEntry[],
  leader: number,
  known: ReadonlySet<string> = new Set(),
  uid?: number,
): ProcessEntry[] {
  const members = new Map<number, ProcessEntry>();
  const owned = uid === undefined ? table : table.filter((entry) => entry.uid === uid);
  for (const entry of owned) {
    if (entry.sid === leader || entry.pgid === leader || known.has(processKey(entry))) {
      members.set(entry.pid, entry);
    }
  }
  const children = new Map<number, ProcessEntry[]>();
  for (const entry of owned) {
    const siblings = children.get(entry.ppid) ?? [];
    siblings.push(entry);
    children.set(entry.ppid, siblings);
  }
  const queue = [...members.keys()];
  while (queue.length > 0) {
    for (const child of children.get(queue.pop()!) ?? []) {
      if (members.has(child.pid)) continue;
      members.set(child.pid, child);
      queue.push(child.pid);
    }
  }
  return [...members.values()].sort((a, b) => a.pid - b.pid);
}
