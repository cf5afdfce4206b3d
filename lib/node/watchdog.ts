/**
 * The leader's watchdog loop: each tick, in the term whose heartbeat window this node opened, it
 * commits the NodeDown/NodeUp that lib/cluster/health.ts decides from the heartbeat table, and
 * settles joins (ready once a voter, removed once expired).
 * Owns: the heartbeat table of this leadership, its window and one tick at a time. Must not touch:
 * the decision itself (lib/cluster/health.ts), sending heartbeats (heartbeat.ts), timers (agent.ts).
 */
import type { ApplyResult, Command } from "../cluster/commands.ts";
import { HeartbeatTable, watchdog } from "../cluster/health.ts";
import type { ClusterState } from "../cluster/state.ts";
import type { NodeId, RaftNode } from "../raft/types.ts";
import type { Log } from "../shared/log.ts";

export interface WatchdogOptions {
  readonly self: NodeId;
  readonly raft: Pick<RaftNode, "status">;
  state(): ClusterState;
  propose(command: Command): Promise<ApplyResult>;
  /** Silence after which a node is marked down. */
  readonly timeoutMs: number;
  /** How long a registration may take to become a voter before it is removed. */
  readonly joinExpiryMs: number;
  readonly log: Log;
  readonly now?: () => number;
}

export class Watchdog {
  /** Heartbeats heard by this node while it leads (the internal API records them). */
  readonly heartbeats = new HeartbeatTable();
  readonly #options: WatchdogOptions;
  readonly #now: () => number;
  /** The term whose heartbeat window is open; the watchdog acts only in it. */
  #windowTerm = -1;
  #busy = false;

  constructor(options: WatchdogOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** Call when this node becomes leader: every node gets a full window from now. */
  becameLeader(term: number): void {
    this.heartbeats.becameLeader(this.#now());
    this.#windowTerm = term;
  }

  /** Commits the status changes due now; does nothing off the leader or while a tick runs. */
  async tick(): Promise<void> {
    const { raft, state, self, timeoutMs, log } = this.#options;
    const { role, term } = raft.status();
    // Raft reports "leader" before the leader-change listener has opened this term's fresh
    // window; judging silence before that would use the previous term's heartbeats.
    if (this.#busy || role !== "leader" || term !== this.#windowTerm || !state().cluster) return;
    this.#busy = true;
    try {
      const joins = {
        isVoter: (id: NodeId) => raft.status().membership.voters.includes(id),
        expiryMs: this.#options.joinExpiryMs,
      };
      const now = this.#now();
      for (const command of watchdog(state(), this.heartbeats, now, timeoutMs, self, joins)) {
        const node = state().nodes.get(command.id);
        const result = await this.#options.propose(command);
        if (result.ok && result.changed)
          log.info(`node ${node?.name ?? command.id} ${change(command)}`);
      }
    } finally {
      this.#busy = false;
    }
  }

  /** How long ago this leader heard node `id` (0 for itself); undefined when it has not. */
  age(id: NodeId): number | undefined {
    if (id === this.#options.self) return 0;
    const heard = this.heartbeats.lastHeard(id);
    return heard === undefined ? undefined : this.#now() - heard;
  }
}

function change(command: Command): string {
  if (command.type === "NodeDown") return "is down";
  if (command.type === "NodeUp") return "is up";
  return "never became a voter: its join expired and its registration was removed";
}
