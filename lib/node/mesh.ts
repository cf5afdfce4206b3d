/**
 * The seam where the WireGuard mesh plugs into a running node. With `--mesh none` node-to-node
 * traffic uses the advertise addresses directly and nothing here does any work.
 * Owns: turning replicated state into mesh changes. Must not touch: Raft, the API.
 */
import type { ClusterState } from "../cluster/state.ts";
import type { PeerObservation } from "../cluster/views.ts";

export interface NodeMesh {
  /** Makes the mesh match the replicated state (idempotent; called on every state change). */
  sync(state: ClusterState): Promise<void>;
  /** What WireGuard observes of each peer, by public key; undefined without a mesh. */
  peers(): ReadonlyMap<string, PeerObservation> | undefined;
  /** The peer-list version the mesh last applied. */
  readonly appliedVersion: number;
  stop(): Promise<void>;
}

export const noMesh: NodeMesh = {
  sync: async () => {},
  peers: () => undefined,
  appliedVersion: Number.POSITIVE_INFINITY,
  stop: async () => {},
};
