/**
 * A tiny in-test network of RaftCores: each node gets in-memory storage that follows the Ready
 * contract, and tests move messages by hand (collect, filter, deliver) or let them flow
 * (stabilize). Owns: test plumbing only. Must not touch: Raft decisions.
 */
import { type RaftConfig, RaftCore, type RaftRestore } from "../../../lib/raft/core.ts";
import { encodeMembership } from "../../../lib/raft/membership.ts";
import { seededRandom } from "../../../lib/raft/rng.ts";
import type {
  Entry,
  HardState,
  Message,
  NodeId,
  ReadState,
  Ready,
  Snapshot,
} from "../../../lib/raft/types.ts";

export type NodeOptions = Partial<Omit<RaftConfig, "id">>;

interface Stored {
  hardState: HardState;
  snapshot?: Snapshot;
  entries: Entry[];
}

const bytes = (text: string) => new TextEncoder().encode(text);

/** A log whose first entry names `voters` and whose later entries have the given terms. */
export function logWithTerms(voters: NodeId[], terms: number[]): Entry[] {
  return terms.map((term, i) =>
    i === 0
      ? { index: 1, term, kind: "membership", data: encodeMembership({ voters, learners: [] }) }
      : { index: i + 1, term, kind: "command", data: bytes(`e${i + 1}t${term}`) },
  );
}

export type OfType<T extends Message["type"]> = Message & { type: T };

export function ofType<T extends Message["type"]>(
  messages: readonly Message[],
  type: T,
): OfType<T>[] {
  return messages.filter((m): m is OfType<T> => m.type === type);
}

export class Net {
  readonly cores = new Map<NodeId, RaftCore>();
  readonly storage = new Map<NodeId, Stored>();
  readonly options = new Map<NodeId, NodeOptions>();
  /** Committed command payloads each node applied, in order (as text). */
  readonly applied = new Map<NodeId, string[]>();
  readonly reads = new Map<NodeId, ReadState[]>();
  readonly failedReads = new Map<NodeId, number[]>();
  /** Every Ready each node produced, oldest first. */
  readonly readies = new Map<NodeId, Ready[]>();
  /** Every message delivered (after filters), oldest first. */
  readonly delivered: Message[] = [];
  readonly isolated = new Set<NodeId>();
  /** Return true to drop a message. */
  drop: (m: Message) => boolean = () => false;

  /** A cluster whose nodes all hold the committed entry 1 naming `ids` as voters. */
  static cluster(ids: NodeId[], options: NodeOptions = {}): Net {
    const net = new Net();
    for (const id of ids) {
      net.add(
        id,
        {
          hardState: { term: 1, vote: 0, commit: 1 },
          entries: logWithTerms(ids, [1]),
        },
        options,
      );
    }
    return net;
  }

  add(id: NodeId, restored: RaftRestore, options: NodeOptions = {}): RaftCore {
    this.storage.set(id, {
      hardState: restored.hardState,
      snapshot: restored.snapshot,
      entries: [...restored.entries],
    });
    this.options.set(id, options);
    this.applied.set(id, []);
    this.reads.set(id, []);
    this.failedReads.set(id, []);
    this.readies.set(id, []);
    return this.start(id);
  }

  /** Starts (or restarts after a crash) a node from what it persisted. */
  start(id: NodeId): RaftCore {
    const stored = this.storage.get(id)!;
    const core = new RaftCore(
      {
        id,
        electionTicks: 10,
        heartbeatTicks: 1,
        random: seededRandom(id * 7919),
        ...this.options.get(id),
      },
      { hardState: stored.hardState, snapshot: stored.snapshot, entries: [...stored.entries] },
    );
    this.cores.set(id, core);
    this.applied.set(id, []);
    return core;
  }

  /** Stops a node; what it did not persist is lost. */
  crash(id: NodeId): void {
    this.cores.delete(id);
  }

  core(id: NodeId): RaftCore {
    const core = this.cores.get(id);
    if (!core) throw new Error(`node ${id} is not running`);
    return core;
  }

  tick(id: NodeId, times = 1): void {
    for (let i = 0; i < times; i++) this.core(id).tick();
  }

  /** Ticks every running node once per round. */
  tickAll(times = 1): void {
    for (let i = 0; i < times; i++) for (const core of this.cores.values()) core.tick();
  }

  /** Processes one Ready of every running node (persist, apply, advance) and returns the messages. */
  collect(): Message[] {
    const out: Message[] = [];
    for (const [id, core] of this.cores) {
      if (!core.hasReady()) continue;
      const rd = core.ready();
      this.readies.get(id)!.push(rd);
      this.persist(id, rd);
      out.push(...rd.messages);
      for (const e of rd.committed) {
        if (e.kind === "command") this.applied.get(id)!.push(new TextDecoder().decode(e.data));
      }
      this.reads.get(id)!.push(...rd.reads);
      this.failedReads.get(id)!.push(...rd.failedReads);
      core.advance(rd);
    }
    return out;
  }

  private persist(id: NodeId, rd: Ready): void {
    const stored = this.storage.get(id)!;
    if (rd.snapshot) {
      stored.snapshot = rd.snapshot;
      stored.entries = [];
    }
    if (rd.entries.length > 0) {
      const first = rd.entries[0]!.index;
      const base = (stored.snapshot?.meta.index ?? 0) + 1;
      stored.entries.length = Math.max(0, first - base);
      stored.entries.push(...rd.entries);
    }
    if (rd.hardState) stored.hardState = rd.hardState;
  }

  /** Compacts a node at its applied index and persists the snapshot, as a driver would. */
  compact(id: NodeId, data: Uint8Array): Snapshot {
    const snapshot = this.core(id).compact(this.core(id).status().applied, data);
    if (!snapshot) throw new Error(`node ${id}'s log already starts after its applied index`);
    const stored = this.storage.get(id)!;
    stored.entries = stored.entries.filter((e) => e.index > snapshot.meta.index);
    stored.snapshot = snapshot;
    return snapshot;
  }

  /** Steps each message into its recipient unless it is dropped, isolated or not running. */
  deliver(messages: readonly Message[]): void {
    for (const m of messages) {
      if (this.isolated.has(m.from) || this.isolated.has(m.to) || this.drop(m)) continue;
      const core = this.cores.get(m.to);
      if (!core) continue;
      this.delivered.push(m);
      core.step(m);
    }
  }

  /**
   * Lets messages flow until every node is quiet. A quiet leader then announces commit indexes
   * no append carried, as the driver does shortly after its loop goes idle.
   */
  stabilize(maxRounds = 1000): void {
    for (let round = 0; round < maxRounds; round++) {
      const messages = this.collect();
      if (messages.length === 0 && ![...this.cores.values()].some((c) => c.hasReady())) {
        const announcing = [...this.cores.values()].filter((c) => c.hasCommitNews());
        if (announcing.length === 0) return;
        for (const core of announcing) core.announceCommit();
        continue;
      }
      this.deliver(messages);
    }
    throw new Error(`network did not settle within ${maxRounds} rounds`);
  }

  /** Ticks `id` until it starts a campaign, then lets the election run. */
  campaign(id: NodeId): void {
    const core = this.core(id);
    for (let i = 0; i < 100 && core.status().role === "follower"; i++) core.tick();
    this.stabilize();
  }

  /** Ticks `id` until it campaigns, then delivers rounds only until it leads (its noop unsent). */
  campaignUntilLeader(id: NodeId): RaftCore {
    const core = this.core(id);
    for (let i = 0; i < 100 && core.status().role !== "leader"; i++) {
      if (core.status().role === "follower") core.tick();
      this.deliver(this.collect());
    }
    if (core.status().role !== "leader") throw new Error(`node ${id} did not win`);
    return core;
  }

  /** Ticks `id` alone until it is leader and everything settled; returns it. */
  elect(id: NodeId): RaftCore {
    this.campaign(id);
    const status = this.core(id).status();
    if (status.role !== "leader") throw new Error(`node ${id} did not win: ${status.role}`);
    return this.core(id);
  }

  /** Whether one of `ids` (running) is leader. */
  leaderAmong(ids: readonly NodeId[]): boolean {
    return ids.some((id) => this.cores.get(id)?.status().role === "leader");
  }

  propose(id: NodeId, text: string): { index: number; term: number } {
    return this.core(id).propose(bytes(text));
  }

  /** The persisted log of a node, as "index:term" strings (after its snapshot). */
  persistedLog(id: NodeId): string[] {
    return this.storage.get(id)!.entries.map((e) => `${e.index}:${e.term}`);
  }

  /** Messages of one type delivered since `from` (an index into `delivered`). */
  deliveredOf<T extends Message["type"]>(type: T, from = 0): OfType<T>[] {
    return ofType(this.delivered.slice(from), type);
  }
}

export { bytes };
