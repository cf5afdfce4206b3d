/**
 * A running Mill node: the mesh, Raft with the cluster state machine, the public API (TLS) and the
 * internal API (servers.ts), heartbeats to the leader (heartbeat.ts), the leader's watchdog
 * (watchdog.ts), forwarding to the leader (forward.ts), workloads and the token copy.
 * Owns: wiring those pieces together, in start order, and the node's timers. Must not touch: Raft
 * decisions, cluster rules, HTTP routes (each lives in its room); this file only connects them.
 */
import { rm } from "node:fs/promises";
import { consola } from "consola";
import type { ApiDeps } from "../api/deps.ts";
import {
  type ApplyResult,
  type Command,
  commitRemovalThrough,
  commitThrough,
  expireJoinThrough,
} from "../cluster/commands.ts";
import { ClusterFsm } from "../cluster/fsm.ts";
import { belowCluster, belowProtocol, clusterProtocol } from "../cluster/protocol-gate.ts";
import { internalHost, memberNodes, type NodeRecord } from "../cluster/state.ts";
import type { PeerList } from "../cluster/views.ts";
import { fingerprintOfDer } from "../identity/fingerprint.ts";
import { createPinnedAgent } from "../identity/pinned-client.ts";
import { acceptedPins } from "../identity/rotation.ts";
import { formatEndpoint, hostPart, networkOf, outsideMesh } from "../mesh/plan.ts";
import { platform } from "../platform/index.ts";
import { type RunningRaftNode, startRaftNode } from "../raft/start.ts";
import { NONE, type StateMachine } from "../raft/types.ts";
import { deadline } from "../shared/deadline.ts";
import { errorMessage } from "../shared/errors.ts";
import { PROTOCOL_VERSION } from "../shared/protocol.ts";
import { unreservedPortsNote } from "../shared/reserved-ports.ts";
import { throwIfStopped } from "../shared/stopping.ts";
import { Bootstrap } from "./bootstrap.ts";
import { loadNode, type NodeConfig, raftDir } from "./config.ts";
import { lockDataDir, pidPath } from "./daemon.ts";
import { leaderForwarder } from "./forward.ts";
import { dataDirDisk, HeartbeatClient } from "./heartbeat.ts";
import { hostResources, unprivilegedPortStart } from "./host.ts";
import { callMember, type MemberIdentity, RefusalLog } from "./member-client.ts";
import { MemberKeys } from "./member-keys.ts";
import { type NodeMesh, noMesh, startNodeMesh } from "./mesh.ts";
import {
  markRemoved,
  NodeRemovedError,
  removedInState,
  removedMessage,
  removedPerMembers,
} from "./removal.ts";
import { serveApis } from "./servers.ts";
import { type HealthSettings, healthSettings } from "./settings.ts";
import { TokenKeeper } from "./token-keeper.ts";
import { VersionReport } from "./version-report.ts";
import { Watchdog } from "./watchdog.ts";
import { allocationLogReader, NodeWorkloads, reportToLeader } from "./workloads.ts";

export interface RunningAgent {
  readonly config: NodeConfig;
  readonly raft: RunningRaftNode;
  readonly fsm: ClusterFsm;
  /**
   * Settles with the error if Raft stops on its own (a failed write, a state it cannot restore).
   * The node then no longer takes part in the cluster, so whoever runs it must stop it and exit
   * non-zero rather than keep serving and heartbeating as ready.
   */
  readonly failed: Promise<Error>;
  /**
   * Resolves, with the line to show, once the node noticed that the cluster removed it and
   * stopped itself: workloads, APIs, Raft and WireGuard (removal.ts); never otherwise.
   */
  readonly removed: Promise<string>;
  stop(): Promise<void>;
}

const COMMIT_TIMEOUT_MS = 10_000;
const KEY_REFRESH_MS = 3_000;

/**
 * Starts the node saved in `dataDir` and resolves once it serves its APIs. It holds the data
 * dir's lock (mill.pid) first, so a second node on the same dir is refused before it touches
 * anything; if the start fails, or `stopping` is aborted while it runs (a signal), whatever had
 * started (WireGuard, Raft, ...) is stopped again and the lock released, so the process can exit
 * at once. (A signal after the last step finds a running node: its caller stops it.)
 */
export async function runAgent(
  dataDir: string,
  env: NodeJS.ProcessEnv = process.env,
  stopping?: AbortSignal,
): Promise<RunningAgent> {
  const settings = healthSettings(env);
  const refusal = removedMessage(dataDir);
  if (refusal) throw new NodeRemovedError(refusal);
  lockDataDir(dataDir);
  const started: (() => unknown)[] = [() => rm(pidPath(dataDir), { force: true })];
  /** Each piece that runs is recorded first, so a stop asked for meanwhile undoes it too. */
  const step = (undo?: () => unknown) => {
    if (undo) started.push(undo);
    throwIfStopped(stopping, "while starting");
  };
  try {
    step();
    return await startAgent(dataDir, settings, step);
  } catch (error) {
    for (const undo of started.reverse()) await Promise.resolve(undo()).catch(() => {});
    throw error;
  }
}

/** runAgent's steps; `started` hears how to undo each piece that runs once it does. */
async function startAgent(
  dataDir: string,
  settings: HealthSettings,
  started: (undo: () => unknown) => void,
): Promise<RunningAgent> {
  const { config, secrets } = await loadNode(dataDir);
  const log = consola.withTag(config.name);

  const fsm = new ClusterFsm();
  // Connections to peers leave from a reserved port, which a local user here cannot bind: peers
  // count them apart from that user's (lib/shared/reserved-ports.ts). Unless anyone may.
  const dial = platform.reservedDialler((line) => log.warn(line));
  const unreserved = unreservedPortsNote(unprivilegedPortStart());
  if (unreserved) log.warn(unreserved);
  // The mesh comes first: Raft and the internal API listen on the mesh address.
  const mesh: NodeMesh =
    config.mesh === "wireguard" ? await startNodeMesh(dataDir, config, secrets, log) : noMesh;
  started(() => mesh.stop());
  const nodeCertificate = { certPem: secrets.nodeCertPem, keyPem: secrets.nodeKeyPem };
  const tokens = await TokenKeeper.open(
    dataDir,
    { token: secrets.token, identity: { certPem: secrets.tlsCertPem, keyPem: secrets.tlsKeyPem } },
    {
      advertise: config.advertise,
      state: () => fsm.state,
      leader: () => raft.status().leader,
      member: () => member,
      timeoutMs: settings.heartbeatIntervalMs,
    },
  );
  // Other nodes' public ports must show the committed identity (acceptedPins). Shows this
  // node's certificate where asked: the internal routes on the public port need it.
  const pinned = createPinnedAgent(
    () => acceptedPins(fsm.state.tlsFingerprint, tokens.fingerprint()),
    nodeCertificate,
    dial,
  );
  started(() => pinned.destroy());
  const member: MemberIdentity = {
    nodeId: config.nodeId,
    memberSecret: secrets.memberSecret,
    certificate: nodeCertificate,
    mesh: config.mesh,
    pinned,
    refusals: new RefusalLog((line) => log.warn(line)),
    dial,
  };
  const internalAddress =
    config.mesh === "wireguard" ? hostPart(config.meshInterfaceAddress) : config.advertise;
  // With the mesh, Raft and the internal API take only connections that came through it.
  const meshRange =
    config.mesh === "wireguard" ? networkOf(config.meshInterfaceAddress) : undefined;
  const refuseSource = meshRange && ((address: string) => outsideMesh(meshRange, address));

  let workloads: NodeWorkloads | undefined;
  /** Set once the public server runs, which a newly saved identity must reach. */
  let serving = false;
  /** Set once the node knows it was removed; see noticeRemoval below. */
  let removal: Promise<void> | undefined;
  let noticeRemoval: (how: string) => void = () => {};
  const stateMachine: StateMachine = {
    apply(index, data) {
      const tokenHash = fsm.state.tokenHash;
      const result = fsm.apply(index, data);
      // A rotation: fetch the new token and identity now rather than at the next tick.
      if (serving && fsm.state.tokenHash !== tokenHash) syncTokens();
      workloads?.changed();
      mesh.sync(fsm.state);
      if (removedInState(fsm.state, config.nodeId)) noticeRemoval("its own log records it");
      noticeBelowCluster();
      return result;
    },
    snapshot: () => fsm.snapshot(),
    check: (data) => fsm.check(data),
    restore(data) {
      fsm.restore(data);
      workloads?.changed();
      mesh.sync(fsm.state);
      if (removedInState(fsm.state, config.nodeId)) noticeRemoval("its own log records it");
      noticeBelowCluster();
    },
  };
  /**
   * A node below the cluster protocol stops (the runner exits 1) with the line naming both: what
   * the cluster now commits may be beyond it. Its own state says so, or a peer's Raft transport,
   * refusing it, does (its state may predate the raise).
   */
  let belowNoticed = false;
  function noticeBelowCluster(below = belowCluster(fsm.state)): void {
    if (below === undefined || belowNoticed) return;
    belowNoticed = true;
    log.error(below);
    raftFailed(new Error(below));
  }

  let raftFailed: (error: Error) => void = () => {};
  const failed = new Promise<Error>((resolve) => {
    raftFailed = resolve;
  });

  const keys = new MemberKeys(() => fsm.state, config.seeds);
  let keysAskedAt = 0;
  /**
   * A key this node does not know may be a member that joined while this node was away: ask a
   * random member for its peer list (at most every few seconds), so the next dial gets in.
   */
  function askForKeys(): void {
    const now = Date.now();
    if (now - keysAskedAt < KEY_REFRESH_MS) return;
    keysAskedAt = now;
    const others = memberNodes(fsm.state).filter((node) => node.id !== config.nodeId);
    const source = others[Math.floor(Math.random() * others.length)];
    if (!source) return;
    callMember(member, source, "GET", "/v1/internal/peers", undefined, settings.heartbeatIntervalMs)
      .then((reply) => {
        if (reply.status === 200) keys.learn((JSON.parse(reply.text) as PeerList).peers);
      })
      .catch((error) => log.debug(`peer keys from ${source.name}: ${errorMessage(error)}`));
  }

  const raft = await startRaftNode({
    id: config.nodeId,
    dir: raftDir(dataDir),
    stateMachine,
    host: internalAddress,
    port: config.raftPort,
    refuseSource,
    dial,
    peers: (id) => {
      const state = fsm.state;
      const node = state.nodes.get(id);
      if (node) return formatEndpoint(internalHost(state, node), node.raftPort);
      return config.seeds.find((peer) => peer.id === id)?.raftAddress;
    },
    protocol: PROTOCOL_VERSION,
    clusterProtocol: () => clusterProtocol(fsm.state),
    refusedBelow: (cluster) => noticeBelowCluster(belowProtocol(cluster)),
    tls: {
      certPem: secrets.nodeCertPem,
      keyPem: secrets.nodeKeyPem,
      peerOf(certDer) {
        const id = keys.nodeOf(fingerprintOfDer(certDer));
        if (id === undefined) askForKeys();
        return id;
      },
      isMember: (id) => keys.isMember(id),
    },
    bootstrap: config.bootstrap !== undefined,
    snapshotEvery: settings.snapshotEvery,
    // A removed node's Raft messages are dropped, whatever its term.
    admit: (from) => fsm.state.nodes.get(from)?.status !== "left",
    warn: (message) => log.warn(message),
    onFatal: (error) => raftFailed(error),
  });
  started(() => raft.stop());
  // The state restored from this data dir already says the cluster moved past this build: refuse
  // to start, as etcd refuses a member older than its cluster version.
  const below = belowCluster(fsm.state);
  if (below) throw new Error(below);

  const commit = commitThrough(raft);
  const commitRemoval = commitRemovalThrough(raft);
  const expireJoin = expireJoinThrough(raft);

  workloads = new NodeWorkloads({
    dataDir,
    self: config.nodeId,
    raft,
    commit,
    state: () => fsm.state,
    report: reportToLeader(member, settings.heartbeatIntervalMs),
    catchUpMs: settings.heartbeatTimeoutMs,
    log,
  });
  started(() => workloads?.close());

  /** Commits `command` and then the follow-ups its result asks for. */
  async function propose(command: Command): Promise<ApplyResult> {
    const result = await commit(command);
    if (result.ok) for (const next of result.followUps ?? []) await propose(next);
    return result;
  }
  function leaderRecord(): NodeRecord | undefined {
    const { leader } = raft.status();
    return leader === NONE ? undefined : fsm.state.nodes.get(leader);
  }

  const watchdog = new Watchdog({
    self: config.nodeId,
    raft,
    state: () => fsm.state,
    propose,
    // No deadline: it may wait behind a promotion's catch-up, and settles once its index applies.
    expireJoin,
    timeoutMs: settings.heartbeatTimeoutMs,
    joinExpiryMs: settings.joinExpiryMs,
    ownResources: hostResources,
    peerProtocol: (id) => raft.peerProtocol(id),
    log,
  });
  const heartbeat = new HeartbeatClient({
    member,
    disk: () => dataDirDisk(dataDir),
    resources: hostResources,
    leaderToHeartbeat: () => (raft.status().role === "leader" ? undefined : leaderRecord()),
    knownPeersVersion: () => Math.max(mesh.appliedVersion, fsm.state.peersVersion),
    mesh: {
      applyPeerList(version, peers) {
        keys.learn(peers);
        return mesh.applyPeerList(version, peers);
      },
    },
    timeoutMs: settings.heartbeatIntervalMs,
  });
  const bootstrap = new Bootstrap(dataDir, config, propose);
  const versionReport = new VersionReport({
    self: config.nodeId,
    member,
    raft,
    commit,
    state: () => fsm.state,
    leader: leaderRecord,
    timeoutMs: settings.heartbeatIntervalMs,
  });

  raft.onLeaderChange((leader, role) => {
    if (role === "leader") {
      watchdog.becameLeader(raft.status().term);
      log.info(`leader for term ${raft.status().term}`);
      bootstrap
        .finish(() => fsm.state)
        .then((finished) => finished && log.info("cluster initialised"))
        .catch((error) => log.error(`bootstrap: ${errorMessage(error)}`));
    } else if (leader !== NONE) {
      log.info(`following node ${leader}`);
    }
  });

  const deps: ApiDeps = {
    raft,
    commit: (command) => deadline(commit(command), COMMIT_TIMEOUT_MS),
    commitRemoval: (removal) => deadline(commitRemoval(removal), COMMIT_TIMEOUT_MS),
    removeJoin: (removal) => deadline(expireJoin(removal), COMMIT_TIMEOUT_MS),
    state: () => fsm.state,
    now: Date.now,
    forwardToLeader: leaderForwarder({
      leader: leaderRecord,
      pinned,
      timeoutMs: COMMIT_TIMEOUT_MS * 2,
    }),
    tlsIdentity: () => tokens.identity(),
    nodeCertificate,
    heartbeats: watchdog.heartbeats,
    diskOf(id) {
      if (id === config.nodeId) return dataDirDisk(dataDir);
      return raft.status().role === "leader" ? watchdog.heartbeats.disk(id) : heartbeat.disk(id);
    },
    heartbeatAge(id) {
      const { role, leader } = raft.status();
      return role === "leader" ? watchdog.age(id) : heartbeat.age(id, leader);
    },
    meshPeers: () => mesh.peers(),
    serializePlans: (task) => workloads!.serialize(task),
    allocationLog: allocationLogReader(member, dataDir, () => fsm.state, COMMIT_TIMEOUT_MS),
    stateSnapshot: () => fsm.snapshot(),
    tokens,
    commitTimeoutMs: COMMIT_TIMEOUT_MS,
    onError: (error) => log.error(`request failed: ${errorMessage(error)}`),
    warn: (line) => log.warn(line),
  };
  const servers = await serveApis({
    config,
    secrets,
    publicIdentity: tokens.identity(),
    internalAddress,
    deps,
    log,
    refuseSource,
  });
  tokens.serveWith((identity) => servers.servePublicIdentity(identity));
  serving = true;

  function syncTokens(): void {
    tokens
      .sync()
      .then((outcome) => {
        if (outcome === "updated") {
          log.info(
            "the cluster token was rotated: saved the new token and serving the new identity",
          );
        }
      })
      .catch((error) => log.warn(`token: ${errorMessage(error)}`));
  }

  /** One heartbeat; when it does not reach a leader, whether the cluster removed this node. */
  async function heartbeatTick(): Promise<void> {
    const outcome = await heartbeat.send().catch((error) => {
      log.debug(`heartbeat: ${errorMessage(error)}`);
      return "failed" as const;
    });
    if (outcome === "removed") return noticeRemoval("the leader refused its member secret (403)");
    if (outcome === "sent" || raft.status().role === "leader" || removal) return;
    const timeout = settings.heartbeatIntervalMs;
    const debug = (line: string) => log.debug(line);
    if (await removedPerMembers(fsm.state, config.nodeId, config.clusterId, timeout, debug)) {
      noticeRemoval("a member's signed answer says its id was removed");
    }
  }

  const timers = [
    setInterval(() => {
      heartbeatTick().catch((error) => log.debug(`heartbeat: ${errorMessage(error)}`));
    }, settings.heartbeatIntervalMs),
    setInterval(() => {
      watchdog.tick().catch((error) => log.debug(`watchdog: ${errorMessage(error)}`));
      workloads?.tick();
      versionReport.tick().catch((error) => log.debug(`version: ${errorMessage(error)}`));
      syncTokens();
      mesh.observe().catch((error) => log.debug(`mesh: ${errorMessage(error)}`));
    }, settings.watchdogTickMs),
  ];
  log.info(
    `node ${config.nodeId} serving on ${formatEndpoint(config.advertise, config.apiPort)}, raft on ${formatEndpoint(internalAddress, config.raftPort)}`,
  );

  let stopping: Promise<void> | undefined;
  function stop(): Promise<void> {
    stopping ??= (async () => {
      for (const timer of timers) clearInterval(timer);
      workloads?.close();
      await servers.close();
      pinned.destroy();
      await raft.stop();
      await mesh.stop();
      await rm(pidPath(dataDir), { force: true });
    })();
    return stopping;
  }

  let announceRemoved: (message: string) => void = () => {};
  const removed = new Promise<string>((resolve) => {
    announceRemoved = resolve;
  });
  noticeRemoval = (how) => {
    removal ??= (async () => {
      log.warn(`this node was removed from the cluster (${how}): stopping it for good`);
      await markRemoved(dataDir, {
        clusterId: config.clusterId,
        nodeId: config.nodeId,
        name: config.name,
        noticedAt: Date.now(),
        how,
      });
      for (const timer of timers) clearInterval(timer);
      await workloads?.stopAll().catch((error) => log.warn(`workloads: ${errorMessage(error)}`));
      await stop();
      announceRemoved(removedMessage(dataDir) ?? "this node was removed from the cluster");
    })().catch((error) => log.error(`stopping after removal: ${errorMessage(error)}`));
  };
  if (removedInState(fsm.state, config.nodeId)) noticeRemoval("its own log records it");

  return { config, raft, fsm, failed, removed, stop };
}
