/**
 * The simulated network between Raft nodes: every message gets a random delay (so messages
 * reorder), may be dropped or duplicated, and is lost when a partition or an asymmetric cut
 * separates its ends at send or at delivery time. Messages reaching one node at one instant
 * arrive together, in random order, like frames in one TCP read. Every decision comes from the
 * seeded Prng.
 * Owns: messages in flight and link state. Must not touch: nodes (the cluster delivers), real sockets.
 */

import type { Message, NodeId } from "../../lib/raft/types.ts";
import type { SimScheduler } from "./clock.ts";
import type { Prng } from "./prng.ts";

export interface LinkFaults {
  /** Delay of each message in virtual ms, uniform in [minDelay, maxDelay]; at least 1. */
  readonly minDelay: number;
  readonly maxDelay: number;
  readonly dropRate: number;
  readonly duplicateRate: number;
}

export const RELIABLE: LinkFaults = { minDelay: 1, maxDelay: 5, dropRate: 0, duplicateRate: 0 };
/** Delays beyond an election timeout: messages from long-gone terms arrive late. */
export const CHAOTIC: LinkFaults = {
  minDelay: 1,
  maxDelay: 250,
  dropRate: 0.2,
  duplicateRate: 0.1,
};
export const UNRELIABLE: LinkFaults = {
  minDelay: 1,
  maxDelay: 40,
  dropRate: 0.1,
  duplicateRate: 0.05,
};

export interface NetworkStats {
  sent: number;
  delivered: number;
  dropped: number;
  duplicated: number;
}

export class SimNetwork {
  /** `${at}>${to}` -> messages arriving together. */
  private readonly arriving = new Map<string, Message[]>();
  private inFlight = 0;
  /** Node -> group; nodes in different groups cannot talk. Nodes never named share group 0. */
  private groups = new Map<NodeId, number>();
  /** "from>to" links that drop everything, one direction only. */
  private cuts = new Set<string>();
  readonly stats: NetworkStats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0 };

  private linkFaults: LinkFaults = RELIABLE;

  constructor(
    private readonly prng: Prng,
    private readonly scheduler: SimScheduler,
    /** Hands a message to its node (which may be down by then). */
    private readonly deliver: (message: Message) => void,
    faults: LinkFaults = RELIABLE,
  ) {
    this.faults = faults;
  }

  get faults(): LinkFaults {
    return this.linkFaults;
  }

  set faults(faults: LinkFaults) {
    if (faults.minDelay < 1 || faults.maxDelay < faults.minDelay) {
      throw new Error(
        `link delays must satisfy 1 <= minDelay <= maxDelay, got ${faults.minDelay}..${faults.maxDelay}`,
      );
    }
    this.linkFaults = faults;
  }

  canReach(from: NodeId, to: NodeId): boolean {
    return (
      (this.groups.get(from) ?? 0) === (this.groups.get(to) ?? 0) && !this.cuts.has(`${from}>${to}`)
    );
  }

  /** Splits the nodes into groups that cannot reach each other. */
  partition(...groups: readonly (readonly NodeId[])[]): void {
    this.groups.clear();
    groups.forEach((members, i) => {
      for (const id of members) this.groups.set(id, i + 1);
    });
  }

  /** Drops every message from `from` to `to` (the other direction still works). */
  cut(from: NodeId, to: NodeId): void {
    this.cuts.add(`${from}>${to}`);
  }

  heal(): void {
    this.groups.clear();
    this.cuts.clear();
  }

  get healthy(): boolean {
    return this.groups.size === 0 && this.cuts.size === 0;
  }

  send(message: Message): void {
    this.stats.sent++;
    if (!this.canReach(message.from, message.to) || this.prng.chance(this.faults.dropRate)) {
      this.stats.dropped++;
      return;
    }
    this.enqueue(message);
    if (this.prng.chance(this.faults.duplicateRate)) {
      this.stats.duplicated++;
      this.enqueue(message);
    }
  }

  get pending(): number {
    return this.inFlight;
  }

  private enqueue(message: Message): void {
    this.inFlight++;
    const at = this.scheduler.now + this.prng.between(this.faults.minDelay, this.faults.maxDelay);
    const key = `${at}>${message.to}`;
    const batch = this.arriving.get(key);
    if (batch) {
      batch.push(message);
      return;
    }
    this.arriving.set(key, [message]);
    this.scheduler.at(at, message.to, () => {
      const due = this.arriving.get(key)!;
      this.arriving.delete(key);
      this.inFlight -= due.length;
      for (const arrived of this.prng.shuffle(due)) {
        // A link that broke while the message was in flight loses it.
        if (!this.canReach(arrived.from, arrived.to)) {
          this.stats.dropped++;
          continue;
        }
        this.stats.delivered++;
        this.deliver(arrived);
      }
    });
  }
}
