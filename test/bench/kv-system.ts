/**
 * What test/bench/raft-vs-etcd.ts drives: a replicated key-value system of three member processes
 * on 127.0.0.1 (Mill's Raft in mill-raft.ts, etcd in etcd.ts), with the same few operations on
 * each, and the small helpers their launchers share.
 * Owns: that interface. Must not touch: processes (the launchers and the benchmark start them).
 */

import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { openSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

export const HOST = "127.0.0.1";
/** Every write stores a 100-byte value. */
export const VALUE = "v".repeat(100);

export interface Member {
  readonly id: number;
  readonly clientPort: number;
  readonly peerPort: number;
  process?: ChildProcess;
}

/** A client of one member, for `concurrency` writes in flight. */
export interface Writer {
  /** Resolves once the write is committed and applied; rejects on any failure or the deadline. */
  put(key: string): Promise<void>;
  close(): void;
}

export interface KvSystem {
  /** Names the system and its settings in the table. */
  readonly name: string;
  readonly members: readonly Member[];
  launch(member: Member, first: boolean): ChildProcess;
  /** Forms the cluster once every member runs. */
  form(): Promise<void>;
  /** The member that says it leads, if any. */
  findLeader(): Promise<Member | undefined>;
  /** A member's current term, and whether it knows a leader. */
  state(member: Member): Promise<{ term: number; hasLeader: boolean }>;
  writer(member: Member, concurrency: number, timeoutMs: number): Writer;
  /** Closes the clients the system keeps for its own questions (not the processes). */
  close(): void;
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, HOST);
  await once(server, "listening");
  const address = server.address();
  server.close();
  return typeof address === "object" && address ? address.port : 0;
}

export async function makeMembers(): Promise<Member[]> {
  const members: Member[] = [];
  for (const id of [1, 2, 3])
    members.push({ id, clientPort: await freePort(), peerPort: await freePort() });
  return members;
}

/** A log file in the work dir for one member's output. */
export function logTo(work: string, name: string): number {
  return openSync(join(work, `${name}.log`), "a");
}
