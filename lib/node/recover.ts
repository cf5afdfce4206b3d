/**
 * `mill recover` on a survivor, with its agent stopped: checks that its majority is really gone,
 * then rewrites its Raft storage so that it is the only voter, keeping every entry it holds,
 * and commits NodeRemove for every other member (they must join again; their old data dirs are
 * refused once they learn it). Owns: that sequence and its refusals. Must not touch: Raft's
 * rules for it (lib/raft/recover.ts), the running node (it must not be running).
 */
import { encodeCommand } from "../cluster/commands.ts";
import { ClusterFsm } from "../cluster/fsm.ts";
import { memberNodes, type NodeRecord } from "../cluster/state.ts";
import { fingerprintOfPem } from "../identity/fingerprint.ts";
import { createPinnedAgent } from "../identity/pinned-client.ts";
import { acceptedPins } from "../identity/rotation.ts";
import { parseToken } from "../identity/token.ts";
import { majority } from "../raft/quorum.ts";
import { recoverAlone, replayCommitted } from "../raft/recover.ts";
import { openStorage } from "../raft/storage/storage.ts";
import { callApi, UnreachableError } from "./client.ts";
import { loadNode, raftDir } from "./config.ts";
import { runningPid } from "./daemon.ts";
import { removedMessage } from "./removal.ts";

export interface RecoverReport {
  readonly name: string;
  /** The last index kept from before, and the new last index. */
  readonly kept: number;
  readonly lastIndex: number;
  /** Kept entries after the survivor's last known commit index, committed now. */
  readonly uncommitted: number;
  /** Members before the recovery (this node included), and those marked removed now. */
  readonly nodesBefore: number;
  readonly removed: readonly string[];
  /** Other voters that answered (only with force: otherwise any quorum refuses). */
  readonly answering: readonly string[];
}

export class RecoverRefused extends Error {
  override name = "RecoverRefused";
  constructor(
    message: string,
    readonly hint: string,
  ) {
    super(message);
  }
}

export async function recoverNode(
  dataDir: string,
  options: { readonly force: boolean; readonly now: number; readonly probeTimeoutMs: number },
): Promise<RecoverReport> {
  const removed = removedMessage(dataDir);
  if (removed) throw new RecoverRefused(removed, "a removed node cannot recover the cluster");
  const pid = runningPid(dataDir);
  if (pid !== undefined) {
    throw new RecoverRefused(
      `this node's agent is running (pid ${pid}): mill recover rewrites its storage offline`,
      "stop it first (systemctl stop mill, or kill the pid), then run mill recover again",
    );
  }
  const { config, secrets } = await loadNode(dataDir);
  const storage = await openStorage(raftDir(dataDir));
  try {
    const restored = storage.restore();
    const fsm = new ClusterFsm();
    const membership = replayCommitted(restored, fsm);
    const others = memberNodes(fsm.state).filter((node) => node.id !== config.nodeId);
    const voters = membership.voters;
    const answering = await answeringVoters(
      others.filter((node) => voters.includes(node.id)),
      secrets.token,
      acceptedPins(fsm.state.tlsFingerprint, fingerprintOfPem(secrets.tlsCertPem)),
      options.probeTimeoutMs,
    );
    const alive = (voters.includes(config.nodeId) ? 1 : 0) + answering.length;
    if (alive >= majority(voters.length) && !options.force) {
      throw new RecoverRefused(
        `the cluster has not lost its majority: ${alive} of its ${voters.length} voters are up (this node${answering.map((node) => `, ${node.name}`).join("")})`,
        "start this node's agent (mill agent) and let it rejoin; --force recovers anyway and removes every other node",
      );
    }
    const removals = others.map((node) =>
      encodeCommand({ type: "NodeRemove", id: node.id, at: options.now }),
    );
    const recovery = recoverAlone(restored, config.nodeId, removals);
    await storage.save({ entries: recovery.entries, hardState: recovery.hardState });
    return {
      name: config.name,
      kept: recovery.kept,
      lastIndex: recovery.hardState.commit,
      uncommitted: recovery.uncommitted,
      nodesBefore: others.length + 1,
      removed: others.map((node) => node.name),
      answering: answering.map((node) => node.name),
    };
  } finally {
    await storage.close();
  }
}

/** The voters whose public API answers at all (any HTTP status: the process is up). */
async function answeringVoters(
  voters: readonly NodeRecord[],
  token: string,
  pins: readonly string[],
  timeoutMs: number,
): Promise<NodeRecord[]> {
  const agent = createPinnedAgent(() => pins);
  try {
    const parsed = parseToken(token.trim());
    const answers = await Promise.all(
      voters.map((node) =>
        callApi(
          {
            endpoint: { host: node.advertise, port: node.apiPort },
            token: parsed,
            agent,
            timeoutMs,
          },
          "GET",
          "/v1/status",
        ).then(
          () => true,
          (error) => !(error instanceof UnreachableError),
        ),
      ),
    );
    return voters.filter((_, i) => answers[i]);
  } finally {
    agent.destroy();
  }
}
