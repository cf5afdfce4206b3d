/**
 * A node that the cluster removed: noticing it, and the mark it leaves in its data dir.
 * Owns: DATA_DIR/removed.json, the one message every command shows for a removed node, the exit
 * status of its agent, and how a running node learns of its removal. Must not touch: stopping the node's pieces (agent.ts does,
 * in its stop order), the removal itself (the leader commits it, lib/api/nodes.ts).
 *
 * A removal is final (ids are never reused and a departed record stays "left"), so any one
 * authentic answer saying so is enough: the node's own applied state showing it left, a member's
 * internal API refusing its member secret with 403 (only a left node's secret gets that), or a
 * member's public API (pinned TLS, the cluster token) answering that its id was removed. The last
 * is how a node inside WireGuard learns it, since the others dropped it as a peer and its
 * heartbeats go nowhere: it asks each time a heartbeat fails.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { MemberStatusResponse } from "../api/wire.ts";
import type { ClusterState } from "../cluster/state.ts";
import { writeSecretFile } from "../identity/files.ts";
import type { PinnedAgent } from "../identity/pinned-client.ts";
import { parseToken } from "../identity/token.ts";
import type { NodeId } from "../raft/types.ts";
import { callApi } from "./client.ts";

export interface RemovedMark {
  readonly clusterId: string;
  readonly nodeId: NodeId;
  readonly name: string;
  /** Milliseconds since the epoch, this node's clock, when it noticed. */
  readonly noticedAt: number;
  /** How it learned: its own state, a member's 403, or a member's answer about its id. */
  readonly how: string;
}

export const removedPath = (dataDir: string) => join(dataDir, "removed.json");

/**
 * How `mill agent` exits for a removed node, whether it noticed while running or was started on a
 * removed node's data dir (after a reboot, say). mill.service lists it in RestartPreventExitStatus=
 * (service.ts), so systemd does not start the agent again only to have it refused, in a loop.
 */
export const REMOVED_EXIT_STATUS = 3;

/** The agent's failure for a removed node (exit REMOVED_EXIT_STATUS); its message is removedMessage's. */
export class NodeRemovedError extends Error {
  override name = "NodeRemovedError";
}

export async function markRemoved(dataDir: string, mark: RemovedMark): Promise<void> {
  await writeSecretFile(removedPath(dataDir), `${JSON.stringify(mark, null, 2)}\n`);
}

/**
 * The one line `mill agent`, `mill status` and the node's own log give for a removed node, or
 * undefined when `dataDir` holds no such mark.
 */
export function removedMessage(dataDir: string): string | undefined {
  if (!existsSync(removedPath(dataDir))) return undefined;
  let mark: Partial<RemovedMark> = {};
  try {
    mark = JSON.parse(readFileSync(removedPath(dataDir), "utf8")) as RemovedMark;
  } catch {
    // A damaged mark still means removed; the message just names less.
  }
  const who = mark.name === undefined ? "this node" : `this node (${mark.name}, id ${mark.nodeId})`;
  return `${who} was removed from the cluster: to join again, clear ${dataDir} (rm -rf ${dataDir}) and run mill join HOST:4400 --token TOKEN`;
}

/** Whether the node's own applied state shows it removed. */
export function removedInState(state: ClusterState, self: NodeId): boolean {
  return state.nodes.get(self)?.status === "left";
}

/**
 * Asks the other members' public APIs whether `self` was removed: true as soon as one says so,
 * false when none does (they say it is a member, or cannot be reached).
 */
export async function removedPerMembers(
  state: ClusterState,
  self: NodeId,
  token: string,
  pinned: PinnedAgent,
  timeoutMs: number,
): Promise<boolean> {
  const parsed = parseToken(token);
  for (const node of state.nodes.values()) {
    if (node.id === self || node.status === "left") continue;
    const answer = await callApi<MemberStatusResponse>(
      {
        endpoint: { host: node.advertise, port: node.apiPort },
        token: parsed,
        agent: pinned,
        timeoutMs,
      },
      "GET",
      `/v1/members/${self}`,
    ).catch(() => undefined);
    if (answer?.removed === true) return true;
  }
  return false;
}
