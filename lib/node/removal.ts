/**
 * A node that the cluster removed: noticing it, and the mark it leaves in its data dir.
 * Owns: DATA_DIR/removed.json, the one message every command shows for a removed node, the exit
 * status of its agent, and how a running node learns of its removal. Must not touch: stopping the node's pieces (agent.ts does,
 * in its stop order), the removal itself (the leader commits it, lib/api/nodes.ts).
 *
 * A removal is final (ids are never reused and a departed record stays "left"), so any one
 * authentic answer saying so is enough: the node's own applied state showing it left, a member's
 * internal API refusing its member secret with 403 (only a left node's secret gets that), or a
 * member's answer that its id was removed, signed with that member's node key over a nonce the
 * node chose. The last is how a node inside WireGuard learns it, since the others dropped it as a
 * peer and its heartbeats go nowhere: it asks each time a heartbeat fails. It needs neither the
 * cluster token nor its TLS identity, which a rotation may have replaced while the node was away
 * (paused, or down when it was removed with --force): the node checks the signer's certificate
 * against the node key its own last applied state records for that member. So it asks over an
 * unauthenticated connection that carries no token, and trusts the signature alone.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { RemovalAnswer } from "../api/wire.ts";
import type { ClusterState } from "../cluster/state.ts";
import { removalStatement } from "../cluster/validate.ts";
import { writeSecretFile } from "../identity/files.ts";
import { nodeKeyOf, signedByNodeKey } from "../identity/node-key.ts";
import { unauthenticatedRequest } from "../identity/pinned-client.ts";
import type { NodeId } from "../raft/types.ts";
import { errorMessage } from "../shared/errors.ts";

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

/** What a node asks the members when its heartbeats fail: about itself, with a fresh nonce. */
export interface RemovalQuestion {
  /** Its own last applied state: the members it asks, and the node keys it trusts. */
  readonly state: ClusterState;
  readonly self: NodeId;
  /** From its own config, never from an answer. */
  readonly clusterId: string;
  readonly nonce: string;
}

/**
 * Whether `answer` (a member's parsed JSON, untrusted) proves that the asker was removed: it says
 * so, for the asker's nonce, signed by the node key that the asker's own state records for the
 * signer, a member there, over the statement the asker rebuilt itself. An impostor without a
 * member's key can only be refused, whatever it answers and whatever certificate it served.
 */
export function checkRemovalProof(
  answer: unknown,
  question: RemovalQuestion,
): { readonly proven: true } | { readonly proven: false; readonly reason: string } {
  const refuse = (reason: string) => ({ proven: false, reason }) as const;
  const { id, removed, nonce, signer, signerCert, signature } = (answer ?? {}) as Partial<
    Record<keyof RemovalAnswer, unknown>
  >;
  if (removed !== true) return refuse("it does not say removed");
  if (id !== question.self) return refuse(`it is about node ${JSON.stringify(id)}`);
  if (nonce !== question.nonce) return refuse("it is for another nonce (a replay?)");
  if (typeof signer !== "number" || typeof signerCert !== "string") {
    return refuse("it names no signer and certificate");
  }
  const record = question.state.nodes.get(signer);
  if (!record || record.status === "left" || record.nodeKey === undefined) {
    return refuse(`its signer ${signer} is no member with a node key here`);
  }
  let key: string;
  try {
    key = nodeKeyOf(signerCert);
  } catch {
    return refuse("its certificate does not parse");
  }
  if (key !== record.nodeKey) return refuse(`its certificate is not node ${signer}'s key`);
  const statement = removalStatement(
    question.clusterId,
    question.self,
    true,
    question.nonce,
    signer,
  );
  if (typeof signature !== "string" || !signedByNodeKey(signerCert, statement, signature)) {
    return refuse(`it is not signed by node ${signer}'s key`);
  }
  return { proven: true };
}

/** A genuine answer (wire.ts RemovalAnswer, a certificate included) is about 1.5 KiB. */
const MAX_REMOVAL_ANSWER_BYTES = 16 * 1024;

/**
 * Asks every other member of `state` (its public address, POST /v1/members/SELF/removal) whether
 * `self` was removed, each with a fresh nonce: true when one answer proves it (checkRemovalProof),
 * false when none does (members say it is one, cannot be reached, or answer without proof).
 * The connection is not authenticated and carries no token: this node may hold only a rotated-out
 * token and identity, and it trusts nothing but the signature.
 */
export async function removedPerMembers(
  state: ClusterState,
  self: NodeId,
  clusterId: string,
  timeoutMs: number,
  debug: (line: string) => void,
): Promise<boolean> {
  const others = [...state.nodes.values()].filter(
    (node) => node.id !== self && node.status !== "left",
  );
  const refused = (name: string, reason: string): false => {
    debug(`removal check: no proof from ${name}: ${reason}`);
    return false;
  };
  const answers = await Promise.all(
    others.map(async (node) => {
      const nonce = randomBytes(32).toString("base64url");
      try {
        const reply = await unauthenticatedRequest({
          host: node.advertise,
          port: node.apiPort,
          method: "POST",
          path: `/v1/members/${self}/removal`,
          body: JSON.stringify({ nonce }),
          timeoutMs,
          maxReplyBytes: MAX_REMOVAL_ANSWER_BYTES,
        });
        if (reply.status !== 200) return refused(node.name, `HTTP ${reply.status}`);
        const answer: unknown = JSON.parse(new TextDecoder().decode(reply.body));
        const check = checkRemovalProof(answer, { state, self, clusterId, nonce });
        return check.proven || refused(node.name, check.reason);
      } catch (error) {
        return refused(node.name, errorMessage(error));
      }
    }),
  );
  return answers.includes(true);
}
