/**
 * A follower's heartbeats to the leader: one every interval over the internal API. The leader's
 * reply carries how long ago it heard each node, which this node keeps so that its own `status`
 * shows the same ages, and the leader's peer-list version, so a node whose log is behind can pull
 * the peer list and heal its mesh first. Each heartbeat carries this node's data-dir disk
 * (free and total bytes), and the reply every node's, so any node's `status` can say whose disk
 * is full. Each also carries the cores and memory this node measured on its own host, which the
 * leader commits to its record when they differ from it (the registration's claim until then).
 * Owns: sending heartbeats and the leader's last view. Must not touch: NodeDown/NodeUp decisions
 * (watchdog.ts, on the leader), the mesh itself (mesh.ts applies the list).
 */

import { statfsSync } from "node:fs";
import type { HeartbeatRequest, HeartbeatResponse } from "../api/wire.ts";
import type { NodeRecord } from "../cluster/state.ts";
import type { PeerList } from "../cluster/views.ts";
import type { NodeId } from "../raft/types.ts";
import { type DiskSample, type NodeResources, parseDiskSample } from "../shared/node-facts.ts";
import { callMember, type MemberIdentity, postToMember } from "./member-client.ts";
import type { NodeMesh } from "./mesh.ts";

export interface HeartbeatClientOptions {
  readonly member: MemberIdentity;
  /** This node's data-dir disk now (see dataDirDisk). */
  disk(): DiskSample | undefined;
  /** This node's cores and memory now (hostResources in host.ts). */
  resources(): NodeResources;
  /** The leader's record when another node leads; undefined on the leader or without one. */
  leaderToHeartbeat(): NodeRecord | undefined;
  /** The newest peer-list version this node knows of (its log's or the mesh's). */
  knownPeersVersion(): number;
  readonly mesh: Pick<NodeMesh, "applyPeerList">;
  /** Each request's timeout: one heartbeat interval. */
  readonly timeoutMs: number;
  readonly now?: () => number;
}

/**
 * What one heartbeat did: the leader took it, refused this node's secret as a departed member's
 * (403: this node was removed), answered something else, or there was no other leader to send to.
 */
export type HeartbeatOutcome = "sent" | "removed" | "refused" | "no-leader";

export class HeartbeatClient {
  readonly #options: HeartbeatClientOptions;
  readonly #now: () => number;
  /** The leader's view of everyone's heartbeat ages, from its last reply; at 0 before one. */
  #leaderView: {
    readonly at: number;
    readonly ages: Readonly<Record<string, number>>;
    readonly disks: Readonly<Record<string, DiskSample>>;
  } = { at: 0, ages: {}, disks: {} };

  constructor(options: HeartbeatClientOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** Sends one heartbeat to the leader, if another node leads; rejects when it is unreachable. */
  async send(): Promise<HeartbeatOutcome> {
    const { member, timeoutMs } = this.#options;
    const leader = this.#options.leaderToHeartbeat();
    if (!leader) return "no-leader";
    const disk = this.#options.disk();
    const body: HeartbeatRequest = {
      ...(disk ? { disk } : {}),
      resources: this.#options.resources(),
    };
    const reply = await postToMember(member, leader, "/v1/internal/heartbeat", body, timeoutMs);
    if (reply.status === 403) return "removed";
    if (reply.status !== 200) return "refused";
    const answer = JSON.parse(reply.text) as HeartbeatResponse;
    this.#leaderView = { at: this.#now(), ages: answer.heardAgoMs, disks: answer.disks ?? {} };
    if (answer.peersVersion <= this.#options.knownPeersVersion()) return "sent";
    // This node's log is behind the peer list: take the leader's list so the mesh can heal.
    const peers = await callMember(
      member,
      leader,
      "GET",
      "/v1/internal/peers",
      undefined,
      timeoutMs,
    );
    if (peers.status === 200) {
      const list = JSON.parse(peers.text) as PeerList;
      await this.#options.mesh.applyPeerList(list.peersVersion, list.peers);
    }
    return "sent";
  }

  /**
   * How long ago the leader (`leader`) heard node `id`, as of its last reply plus the time since;
   * undefined before any reply or for a node it has not heard.
   */
  age(id: NodeId, leader: NodeId): number | undefined {
    const { at, ages } = this.#leaderView;
    if (at === 0) return undefined;
    const since = this.#now() - at;
    // The leader does not list itself; its last reply is when this node last heard it.
    if (id === leader) return since;
    const age = ages[String(id)];
    return age === undefined ? undefined : age + since;
  }

  /** Node `id`'s data-dir disk as the leader last heard it (checked: it crossed the network). */
  disk(id: NodeId): DiskSample | undefined {
    return parseDiskSample(this.#leaderView.disks[String(id)]);
  }
}

/** The data dir's file system: free bytes (for unprivileged users) and total; undefined if unknown. */
export function dataDirDisk(dataDir: string): DiskSample | undefined {
  try {
    const stats = statfsSync(dataDir);
    return { freeBytes: stats.bavail * stats.bsize, totalBytes: stats.blocks * stats.bsize };
  } catch {
    return undefined;
  }
}
