/**
 * Which member holds a key: how a running node tells, for its mutual-TLS channels (Raft, the
 * internal API), which node a peer's certificate belongs to. The answer comes from the replicated
 * records of current members; for nodes this node's log does not hold yet, from peer lists it got
 * over an authenticated channel (the join answer, pinned to the token's fingerprint, or a pull
 * from a member). A node that has a record in the log is judged by that record alone, so a
 * removed node's key stops working as soon as its removal is applied.
 * Owns: that lookup. Must not touch: sockets, certificates' bytes (the caller fingerprints them).
 */
import { type ClusterState, memberNodes } from "../cluster/state.ts";
import type { PeerEntry } from "../cluster/views.ts";
import type { NodeId } from "../raft/types.ts";

export class MemberKeys {
  /** Members learned from peer lists, by id; used only while the log has no record of them. */
  readonly #learned = new Map<NodeId, string>();
  readonly #state: () => ClusterState;

  constructor(state: () => ClusterState, seeds: readonly PeerEntry[] = []) {
    this.#state = state;
    this.learn(seeds);
  }

  /** The current member whose registered node key is `nodeKey`. */
  nodeOf(nodeKey: string): NodeId | undefined {
    const state = this.#state();
    const member = memberNodes(state).find((node) => node.nodeKey === nodeKey);
    if (member) return member.id;
    for (const [id, key] of this.#learned) {
      if (key === nodeKey && !state.nodes.has(id)) return id;
    }
    return undefined;
  }

  /** Whether node `id` is a member: its record says so, or, without one, a peer list did. */
  isMember(id: NodeId): boolean {
    const node = this.#state().nodes.get(id);
    return node ? node.status !== "left" : this.#learned.has(id);
  }

  /** Remembers the keys of the members in `peers`, a list from an authenticated source. */
  learn(peers: readonly PeerEntry[]): void {
    for (const peer of peers) {
      if (peer.status !== "left" && peer.nodeKey !== undefined) {
        this.#learned.set(peer.id, peer.nodeKey);
      }
    }
  }
}
