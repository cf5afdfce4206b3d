/**
 * Keeps this node's Mill version in its replicated record: after a restart on another build, the
 * node tells the leader (or, leading, commits it itself) until the record says so.
 * Owns: when to report. Must not touch: the record's rules (the FSM applies NodeVersion), how
 * members are reached (member-client.ts).
 */
import type { Commit } from "../cluster/commands.ts";
import type { ClusterState, NodeRecord } from "../cluster/state.ts";
import type { NodeId, RaftNode } from "../raft/types.ts";
import { MILL_VERSION } from "../shared/version.ts";
import { type MemberIdentity, postToMember } from "./member-client.ts";

export interface VersionReportOptions {
  readonly self: NodeId;
  readonly member: MemberIdentity;
  readonly raft: Pick<RaftNode, "status">;
  readonly commit: Commit;
  state(): ClusterState;
  leader(): NodeRecord | undefined;
  readonly timeoutMs: number;
  /** This build's version (tests pass another). */
  readonly version?: string;
}

export class VersionReport {
  readonly #options: VersionReportOptions;
  #sending = false;

  constructor(options: VersionReportOptions) {
    this.#options = options;
  }

  /** Call every tick: one report at a time, only while the record differs. */
  async tick(): Promise<void> {
    const { self, state, raft, commit, member, timeoutMs } = this.#options;
    const version = this.#options.version ?? MILL_VERSION;
    const record = state().nodes.get(self);
    if (this.#sending || !record || record.status === "left" || record.version === version) return;
    this.#sending = true;
    try {
      if (raft.status().role === "leader") {
        await commit({ type: "NodeVersion", id: self, version });
        return;
      }
      const leader = this.#options.leader();
      if (leader)
        await postToMember(member, leader, "/v1/internal/version", { version }, timeoutMs);
    } finally {
      this.#sending = false;
    }
  }
}
