/**
 * Node liveness as the leader sees it: the in-memory heartbeat table and the watchdog decision.
 * Owns: when a node counts as silent or heard again. Must not touch: the Raft log (heartbeats never
 * go through it; only the watchdog's NodeDown/NodeUp do), clocks (time is passed in), timers.
 *
 * The watchdog measures silence from the latest of: the node's last heartbeat, the moment this
 * node became leader (every node gets a full window after a leader change, since the new leader
 * has heard nobody yet) and the node's last status change (a node that just joined or came back
 * gets a full window too). A down node comes back only on a real heartbeat within the timeout.
 */

import type { NodeId } from "../raft/types.ts";
import type { DiskSample, NodeResources } from "../shared/node-facts.ts";
import type { ProtocolVersion } from "../shared/protocol.ts";
import type { NodeStatusChange } from "./commands.ts";
import type { ClusterState } from "./state.ts";

/** What a heartbeat may carry that the node measured on its own host (each checked on arrival). */
export interface HeardFacts {
  readonly disk?: DiskSample;
  readonly resources?: NodeResources;
  /** The protocol the member's call said it speaks (its header; authenticated with the call). */
  readonly protocol?: ProtocolVersion;
}

export class HeartbeatTable {
  readonly #heard = new Map<NodeId, number>();
  /** Each node's data-dir disk, from its last heartbeat that carried one. */
  readonly #disks = new Map<NodeId, DiskSample>();
  /** Each node's cores and memory, from its last heartbeat that carried them. */
  readonly #resources = new Map<NodeId, NodeResources>();
  /** Each node's protocol, from its last heartbeat: what protocol-gate.ts counts as shown. */
  readonly #protocols = new Map<NodeId, ProtocolVersion>();
  #windowStart = Number.NEGATIVE_INFINITY;

  /** A heartbeat from `id` arrived at `now`, with what it measured when it sent that. */
  heard(id: NodeId, now: number, facts: HeardFacts = {}): void {
    this.#heard.set(id, Math.max(now, this.#heard.get(id) ?? now));
    if (facts.disk) this.#disks.set(id, facts.disk);
    if (facts.resources) this.#resources.set(id, facts.resources);
    if (facts.protocol) this.#protocols.set(id, facts.protocol);
  }

  /** The protocol node `id` showed in its last heartbeat of this leadership. */
  protocol(id: NodeId): ProtocolVersion | undefined {
    return this.#protocols.get(id);
  }

  disk(id: NodeId): DiskSample | undefined {
    return this.#disks.get(id);
  }

  /** Node `id`'s resources as its last heartbeat measured them (resources.ts decides on them). */
  resources(id: NodeId): NodeResources | undefined {
    return this.#resources.get(id);
  }

  /** Every node's last disk sample, keyed by id (for heartbeat replies). */
  disks(): Record<NodeId, DiskSample> {
    return Object.fromEntries(this.#disks);
  }

  /** Forgets what an earlier leadership heard and opens a fresh window for every node. */
  becameLeader(now: number): void {
    this.#heard.clear();
    this.#disks.clear();
    this.#resources.clear();
    this.#protocols.clear();
    this.#windowStart = now;
  }

  lastHeard(id: NodeId): number | undefined {
    return this.#heard.get(id);
  }

  /** Milliseconds since each heard node's last heartbeat, keyed by id (for heartbeat replies). */
  ages(now: number): Record<NodeId, number> {
    return Object.fromEntries([...this.#heard].map(([id, at]) => [id, Math.max(0, now - at)]));
  }

  get windowStart(): number {
    return this.#windowStart;
  }
}

/** How the watchdog settles joins: a registration proves nothing until its node is a voter. */
export interface JoinRules {
  /** Whether `id` is a Raft voter now: only a running node that caught up becomes one. */
  readonly isVoter: (id: NodeId) => boolean;
  /** A registration that has not become a voter this long after it was committed expires. */
  readonly expiryMs: number;
}

/**
 * The status changes the leader should propose now. `self` is the leader's own id: it is alive by
 * definition, so it is never marked down, and is brought back up if an earlier leader marked it.
 * A joining node becomes ready once it is a voter, and is removed when its join expires (heartbeats
 * do not count: whoever registered it holds its credentials).
 */
export function watchdog(
  state: ClusterState,
  table: HeartbeatTable,
  now: number,
  timeoutMs: number,
  self: NodeId,
  joins: JoinRules,
): NodeStatusChange[] {
  const commands: NodeStatusChange[] = [];
  for (const node of [...state.nodes.values()].sort((a, b) => a.id - b.id)) {
    if (node.status === "left") continue;
    if (node.status === "joining") {
      if (node.id === self || joins.isVoter(node.id)) {
        commands.push({ type: "NodeUp", id: node.id, at: now });
      } else if (now - node.joinedAt > joins.expiryMs) {
        commands.push({ type: "NodeRemove", id: node.id, at: now });
      }
      continue;
    }
    const heard = table.lastHeard(node.id);
    if (node.status === "down") {
      const heardAgain = node.id === self || (heard !== undefined && now - heard <= timeoutMs);
      if (heardAgain) commands.push({ type: "NodeUp", id: node.id, at: now });
      continue;
    }
    if (node.id === self) continue;
    const since = Math.max(
      heard ?? Number.NEGATIVE_INFINITY,
      table.windowStart,
      node.lastStatusChangeAt,
    );
    if (now - since > timeoutMs) commands.push({ type: "NodeDown", id: node.id, at: now });
  }
  return commands;
}
