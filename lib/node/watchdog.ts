/**
 * The leader's watchdog loop: each tick, in the term whose heartbeat window this node opened, it
 * commits the NodeDown/NodeUp that lib/cluster/health.ts decides from the heartbeat table,
 * settles joins (ready once a voter; once expired, removed with their learner entry, if any), and
 * commits the cores and memory a node measured (its heartbeats; its own host for the leader) when
 * lib/cluster/resources.ts says they differ from its record and the cluster protocol has
 * NodeResources, and raises the cluster protocol when lib/cluster/protocol-gate.ts says every
 * member showed a newer one.
 * Owns: the heartbeat table of this leadership, its window and one tick at a time. Must not touch:
 * the decision itself (lib/cluster/health.ts), sending heartbeats (heartbeat.ts), timers (agent.ts).
 */
import type { ApplyResult, Command, ExpireJoin } from "../cluster/commands.ts";
import { HeartbeatTable, watchdog } from "../cluster/health.ts";
import { allowed, bothShow, protocolRaise, shownBy } from "../cluster/protocol-gate.ts";
import { resourceChanges } from "../cluster/resources.ts";
import type { ClusterState } from "../cluster/state.ts";
import type { NodeId, RaftNode } from "../raft/types.ts";
import { errorMessage } from "../shared/errors.ts";
import { formatBytes } from "../shared/format.ts";
import type { Log } from "../shared/log.ts";
import type { NodeResources } from "../shared/node-facts.ts";
import { formatProtocol, type ProtocolVersion } from "../shared/protocol.ts";

export interface WatchdogOptions {
  readonly self: NodeId;
  readonly raft: Pick<RaftNode, "status">;
  state(): ClusterState;
  propose(command: Command): Promise<ApplyResult>;
  /**
   * Removes an expired join's registration together with its learner entry, if it became one
   * (the only NodeRemove the watchdog decides): a plain NodeRemove would leave the learner behind.
   */
  readonly expireJoin: ExpireJoin;
  /** Silence after which a node is marked down. */
  readonly timeoutMs: number;
  /** How long a registration may take to become a voter before it is removed. */
  readonly joinExpiryMs: number;
  /** The protocol in the hello of this node's current Raft connection to `id`, if any. */
  peerProtocol(id: NodeId): ProtocolVersion | undefined;
  /** The leader's own cores and memory now: it sends itself no heartbeats. */
  ownResources(): NodeResources;
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
  /** Nodes whose expired join is being removed. */
  readonly #expiring = new Set<NodeId>();
  /** The latest expiry started (settled once it is done), for tests to await. */
  expiries: Promise<void> = Promise.resolve();

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
        if (command.type === "NodeRemove") {
          this.#expire(command, node?.name ?? String(command.id));
          continue;
        }
        const result = await this.#options.propose(command);
        if (result.ok && result.changed)
          log.info(`node ${node?.name ?? command.id} ${change(command)}`);
      }
      const shown = shownBy(self, (id) =>
        bothShow(this.heartbeats.protocol(id), this.#options.peerProtocol(id)),
      );
      const raise = protocolRaise(state(), shown);
      if (raise) {
        const result = await this.#options.propose(raise);
        if (result.ok && result.changed) {
          log.info(`every node speaks protocol ${formatProtocol(raise)}: the cluster does now`);
        }
      }
      // Until the cluster speaks NodeResources, records keep the registration's figures.
      const reported = (id: NodeId) =>
        id === self ? this.#options.ownResources() : this.heartbeats.resources(id);
      const changes = allowed(state(), "NodeResources") ? resourceChanges(state(), reported) : [];
      for (const command of changes) {
        const claimed = state().nodes.get(command.id)?.resources;
        const result = await this.#options.propose(command);
        if (result.ok && result.changed && result.node) {
          log.info(
            `node ${result.node.name} measured ${describeResources(command.resources)} on its host; its record said ${claimed ? describeResources(claimed) : "nothing"}`,
          );
        }
      }
    } finally {
      this.#busy = false;
    }
  }

  /**
   * Starts removing an expired join without holding up the tick: the removal waits in Raft's
   * membership queue behind any promotion still catching up (up to a minute), and NodeDowns
   * cannot wait that long. One removal per node at a time.
   */
  #expire(removal: Extract<Command, { type: "NodeRemove" }>, name: string): void {
    if (this.#expiring.has(removal.id)) return;
    this.#expiring.add(removal.id);
    const { expireJoin, log } = this.#options;
    this.expiries = expireJoin(removal)
      .then(
        (result) => {
          if (result === undefined) log.info(`node ${name} became a voter: its join stays`);
          else if (result.ok && result.changed) log.info(`node ${name} ${change(removal)}`);
        },
        (error) =>
          log.warn(`node ${name}: removing its expired join failed: ${errorMessage(error)}`),
      )
      .finally(() => this.#expiring.delete(removal.id));
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

function describeResources(resources: NodeResources): string {
  return `${resources.cores} cores, ${formatBytes(resources.memoryBytes)}`;
}
