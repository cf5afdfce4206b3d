/**
 * A running Mill node: Raft with the cluster state machine, the public API (TLS) and the internal
 * API, heartbeats to the leader and, on the leader, the watchdog that commits NodeDown/NodeUp.
 * Owns: wiring the rooms together and the node's timers. Must not touch: Raft decisions, cluster
 * rules, HTTP routes (each lives in its room); this file only connects them.
 */
import { rm, writeFile } from "node:fs/promises";
import { consola } from "consola";
import { guardAuthFailures, type Handler } from "../api/guard.ts";
import type { ApiDeps, HeartbeatResponse } from "../api/index.ts";
import { createInternalApi, createPublicApi } from "../api/index.ts";
import { AuthBackoff } from "../api/ratelimit.ts";
import type { ApplyResult, Command } from "../cluster/commands.ts";
import { encodeCommand } from "../cluster/commands.ts";
import { ClusterFsm } from "../cluster/fsm.ts";
import { HeartbeatTable, watchdog } from "../cluster/health.ts";
import { internalHost, type NodeRecord } from "../cluster/state.ts";
import type { PeerList } from "../cluster/views.ts";
import { fingerprintOfPem } from "../identity/fingerprint.ts";
import { createPinnedAgent, pinnedRequest } from "../identity/pinned-client.ts";
import { formatEndpoint, hostPart } from "../mesh/plan.ts";
import { platform, type Server } from "../platform/index.ts";
import { NONE, type RunningRaftNode, type StateMachine, startRaftNode } from "../raft/index.ts";
import { loadNode, type NodeConfig, raftDir, saveConfig } from "./config.ts";
import { pidPath } from "./daemon.ts";
import { callMember, type MemberIdentity, postToMember } from "./member-client.ts";
import { type NodeMesh, noMesh, startNodeMesh } from "./mesh.ts";
import { healthSettings } from "./settings.ts";
import { TokenKeeper } from "./token-keeper.ts";
import { NodeWorkloads, reportToLeader } from "./workloads.ts";

export interface RunningAgent {
  readonly config: NodeConfig;
  readonly raft: RunningRaftNode;
  readonly fsm: ClusterFsm;
  stop(): Promise<void>;
}

const COMMIT_TIMEOUT_MS = 10_000;
const INTERNAL_PREFIX = "/v1/internal/";
const HOP_BY_HOP = new Set([
  "host",
  "connection",
  "keep-alive",
  "content-length",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "proxy-authorization",
  "proxy-connection",
]);

/** Starts the node saved in `dataDir` and resolves once it serves its APIs. */
export async function runAgent(
  dataDir: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<RunningAgent> {
  const settings = healthSettings(env);
  const { config, secrets } = await loadNode(dataDir);
  await writeFile(pidPath(dataDir), `${process.pid}\n`, { mode: 0o600 });
  const log = consola.withTag(config.name);

  const fsm = new ClusterFsm();
  // The mesh comes first: Raft and the internal API listen on the mesh address.
  const mesh: NodeMesh =
    config.mesh === "wireguard" ? await startNodeMesh(dataDir, config, secrets, log) : noMesh;
  const pinned = createPinnedAgent(fingerprintOfPem(secrets.tlsCertPem));
  const tokens = await TokenKeeper.open(dataDir, secrets.token);
  const member: MemberIdentity = {
    nodeId: config.nodeId,
    memberSecret: secrets.memberSecret,
    mesh: config.mesh,
    pinned,
  };
  const internalAddress =
    config.mesh === "wireguard" ? hostPart(config.meshInterfaceAddress) : config.advertise;

  let workloads: NodeWorkloads | undefined;
  const stateMachine: StateMachine = {
    apply(index, data) {
      const result = fsm.apply(index, data);
      workloads?.changed();
      mesh.sync(fsm.state);
      return result;
    },
    snapshot: () => fsm.snapshot(),
    restore(data) {
      fsm.restore(data);
      workloads?.changed();
      mesh.sync(fsm.state);
    },
  };

  const raft = await startRaftNode({
    id: config.nodeId,
    dir: raftDir(dataDir),
    stateMachine,
    host: internalAddress,
    port: config.raftPort,
    peers: (id) => {
      const state = fsm.state;
      const node = state.nodes.get(id);
      if (node) return formatEndpoint(internalHost(state, node), node.raftPort);
      return config.seeds.find((peer) => peer.id === id)?.raftAddress;
    },
    bootstrap: config.bootstrap !== undefined,
    warn: (message) => log.warn(message),
  });

  workloads = new NodeWorkloads({
    dataDir,
    self: config.nodeId,
    raft,
    state: () => fsm.state,
    report: reportToLeader(member, settings.heartbeatIntervalMs),
    catchUpMs: settings.heartbeatTimeoutMs,
    log,
  });
  const heartbeats = new HeartbeatTable();
  /** The term whose heartbeat window is open; the watchdog acts only in it. */
  let windowTerm = -1;
  /** On a follower: the leader's view of everyone's heartbeat ages, from its last reply. */
  let leaderView: { readonly at: number; readonly ages: Readonly<Record<string, number>> } = {
    at: 0,
    ages: {},
  };
  let savedConfig = config;

  async function propose(command: Command): Promise<ApplyResult> {
    const result = (await raft.propose(encodeCommand(command))) as ApplyResult;
    if (result.ok) for (const next of result.followUps ?? []) await propose(next);
    return result;
  }

  /** The first entries of a new cluster: its configuration, then this node's registration. */
  async function finishBootstrap(): Promise<void> {
    const pending = savedConfig.bootstrap;
    if (!pending) return;
    if (!fsm.state.cluster) await propose(pending.init);
    const registered = await propose(pending.register);
    if (!registered.ok) throw new Error(`cannot register this node: ${registered.error}`);
    const { bootstrap: _, ...rest } = savedConfig;
    savedConfig = rest;
    await saveConfig(dataDir, savedConfig);
    log.info("cluster initialised");
  }

  raft.onLeaderChange((leader, role) => {
    if (role === "leader") {
      heartbeats.becameLeader(Date.now());
      windowTerm = raft.status().term;
      log.info(`leader for term ${raft.status().term}`);
      finishBootstrap().catch((error) => log.error(`bootstrap: ${errorText(error)}`));
    } else if (leader !== NONE) {
      log.info(`following node ${leader}`);
    }
  });

  function leaderRecord(): NodeRecord | undefined {
    const { leader } = raft.status();
    return leader === NONE ? undefined : fsm.state.nodes.get(leader);
  }

  async function sendHeartbeat(): Promise<void> {
    if (raft.status().role === "leader") return;
    const leader = leaderRecord();
    if (!leader) return;
    const timeoutMs = settings.heartbeatIntervalMs;
    const reply = await postToMember(member, leader, `${INTERNAL_PREFIX}heartbeat`, {}, timeoutMs);
    if (reply.status !== 200) return;
    const answer = JSON.parse(reply.text) as HeartbeatResponse;
    leaderView = { at: Date.now(), ages: answer.heardAgoMs };
    if (answer.peersVersion > Math.max(mesh.appliedVersion, fsm.state.peersVersion)) {
      // This node's log is behind the peer list: take the leader's list so the mesh can heal.
      const peers = await callMember(
        member,
        leader,
        "GET",
        `${INTERNAL_PREFIX}peers`,
        undefined,
        timeoutMs,
      );
      if (peers.status === 200) {
        const list = JSON.parse(peers.text) as PeerList;
        await mesh.applyPeerList(list.peersVersion, list.peers);
      }
    }
  }

  let watchdogBusy = false;
  async function runWatchdog(): Promise<void> {
    const { role, term } = raft.status();
    // Raft reports "leader" before the leader-change listener has opened this term's fresh
    // window; judging silence before that would use the previous term's heartbeats.
    if (watchdogBusy || role !== "leader" || term !== windowTerm || !fsm.state.cluster) return;
    watchdogBusy = true;
    try {
      const now = Date.now();
      for (const command of watchdog(
        fsm.state,
        heartbeats,
        now,
        settings.heartbeatTimeoutMs,
        config.nodeId,
      )) {
        const node = fsm.state.nodes.get(command.id);
        const result = await propose(command);
        if (result.ok && result.changed) {
          log.info(
            `node ${node?.name ?? command.id} is ${command.type === "NodeDown" ? "down" : "up"}`,
          );
        }
      }
    } finally {
      watchdogBusy = false;
    }
  }

  const deps: ApiDeps = {
    raft,
    state: () => fsm.state,
    now: Date.now,
    async forwardToLeader(request) {
      const leader = leaderRecord();
      if (!leader) throw new Error("no leader");
      const url = new URL(request.url);
      const headers: Record<string, string> = {};
      // Hop-by-hop headers describe the client's connection, not this one: a forwarded
      // "connection: close" would have the leader close a socket the keep-alive agent reuses.
      request.headers.forEach((value, key) => {
        if (!HOP_BY_HOP.has(key)) headers[key] = value;
      });
      const reply = await pinnedRequest({
        host: leader.advertise,
        port: leader.apiPort,
        fingerprint: pinned.fingerprint,
        agent: pinned,
        method: request.method,
        path: url.pathname + url.search,
        headers,
        body: new Uint8Array(await request.arrayBuffer()),
        timeoutMs: COMMIT_TIMEOUT_MS * 2,
      });
      const contentType = reply.headers["content-type"];
      // A copy: Response wants bytes backed by a plain ArrayBuffer (Deno checks it).
      return new Response(reply.status === 204 ? null : reply.body.slice(), {
        status: reply.status,
        headers: typeof contentType === "string" ? { "content-type": contentType } : {},
      });
    },
    tlsIdentity: () => ({ certPem: secrets.tlsCertPem, keyPem: secrets.tlsKeyPem }),
    heartbeats,
    heartbeatAge(id) {
      const now = Date.now();
      if (raft.status().role === "leader") {
        if (id === config.nodeId) return 0;
        const heard = heartbeats.lastHeard(id);
        return heard === undefined ? undefined : now - heard;
      }
      if (leaderView.at === 0) return undefined;
      // The leader does not list itself; its last reply is when this node last heard it.
      if (id === raft.status().leader) return now - leaderView.at;
      const age = leaderView.ages[String(id)];
      return age === undefined ? undefined : age + (now - leaderView.at);
    },
    meshPeers: () => mesh.peers(),
    serializePlans: (task) => workloads!.serialize(task),
    stateSnapshot: () => fsm.snapshot(),
    tokens,
    commitTimeoutMs: COMMIT_TIMEOUT_MS,
    onError: (error) => log.error(`request failed: ${errorText(error)}`),
  };

  const publicApi = createPublicApi(deps);
  const internalApi = createInternalApi(deps);
  const tls = { cert: secrets.tlsCertPem, key: secrets.tlsKeyPem };
  const servers: Server[] = [];
  const isInternal = (request: Request) =>
    new URL(request.url).pathname.startsWith(INTERNAL_PREFIX);
  // Member secrets must never travel in clear: without a mesh the internal routes share the
  // public TLS port; with one they are served on the mesh address only.
  // One back-off for both ports: a source that keeps failing authentication is refused on both.
  const backoff = new AuthBackoff();
  const guarded = (handler: Handler) =>
    guardAuthFailures(handler, { backoff, now: Date.now, warn: (line) => log.warn(line) });
  const publicPort = guarded((request) =>
    isInternal(request) && config.mesh === "none"
      ? internalApi.fetch(request)
      : publicApi.fetch(request),
  );
  servers.push(
    await platform.serve({
      hostname: config.advertise,
      port: config.apiPort,
      tls,
      fetch: (request, client) => publicPort(request, client.remoteAddress),
    }),
  );
  if (config.mesh === "wireguard") {
    const internalPort = guarded((request) => internalApi.fetch(request));
    servers.push(
      await platform.serve({
        hostname: internalAddress,
        port: config.apiPort,
        fetch: (request, client) => internalPort(request, client.remoteAddress),
      }),
    );
  }

  const timers = [
    setInterval(() => {
      sendHeartbeat().catch((error) => log.debug(`heartbeat: ${errorText(error)}`));
    }, settings.heartbeatIntervalMs),
    setInterval(() => {
      runWatchdog().catch((error) => log.debug(`watchdog: ${errorText(error)}`));
      workloads?.tick();
      tokens
        .sync(fsm.state, raft.status().leader, member, settings.heartbeatIntervalMs)
        .then((outcome) => {
          if (outcome === "updated") log.info("the cluster token was rotated: saved the new one");
        })
        .catch((error) => log.warn(`token: ${errorText(error)}`));
      mesh.observe().catch((error) => log.debug(`mesh: ${errorText(error)}`));
    }, settings.watchdogTickMs),
  ];
  log.info(
    `node ${config.nodeId} serving on ${formatEndpoint(config.advertise, config.apiPort)}, raft on ${formatEndpoint(internalAddress, config.raftPort)}`,
  );

  let stopping: Promise<void> | undefined;
  return {
    config,
    raft,
    fsm,
    stop() {
      stopping ??= (async () => {
        for (const timer of timers) clearInterval(timer);
        workloads?.close();
        await Promise.all(servers.map((server) => server.close()));
        pinned.destroy();
        await raft.stop();
        await mesh.stop();
        await rm(pidPath(dataDir), { force: true });
      })();
      return stopping;
    },
  };
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
