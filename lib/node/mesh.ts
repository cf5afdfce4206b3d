/**
 * The seam where the WireGuard mesh plugs into a running node: the replicated node list (or, for a
 * node that has just joined, the peer list the join answered with) becomes the interface's peers.
 * With `--mesh none` node-to-node traffic uses the advertise addresses and nothing here works.
 * Owns: turning cluster state into mesh changes. Must not touch: Raft, the API, WireGuard itself
 * (lib/mesh owns the process and the UAPI).
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { type ClusterState, memberNodes } from "../cluster/state.ts";
import type { PeerEntry, PeerObservation } from "../cluster/views.ts";
import { writeSecretFile } from "../identity/files.ts";
import { type Mesh, startMesh } from "../mesh/index.ts";
import { type MeshNode, peersFor } from "../mesh/plan.ts";
import { resolveBinary } from "../platform/assets.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Log } from "../shared/log.ts";
import { pollFor } from "../shared/poll.ts";
import type { NodeConfig, NodeSecrets } from "./config.ts";

export interface NodeMesh {
  /** Makes the peers match the replicated state (coalesced; call on every state change). */
  sync(state: ClusterState): void;
  /** Applies a peer list pulled from the leader when the local state is behind. */
  applyPeerList(version: number, peers: readonly PeerEntry[]): Promise<void>;
  /** Refreshes what peers() reports from WireGuard. */
  observe(): Promise<void>;
  /** What WireGuard observes of each peer, by public key; undefined without a mesh. */
  peers(): ReadonlyMap<string, PeerObservation> | undefined;
  /** The peer-list version last applied. */
  readonly appliedVersion: number;
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

export const noMesh: NodeMesh = {
  sync: () => {},
  applyPeerList: async () => {},
  observe: async () => {},
  peers: () => undefined,
  appliedVersion: Number.POSITIVE_INFINITY,
  pid: undefined,
  stop: async () => {},
};

const fromState = (state: ClusterState): MeshNode[] =>
  memberNodes(state).map((node) => ({
    id: String(node.id),
    publicKey: node.wgPublicKey,
    meshAddress: node.meshAddress,
    advertiseAddress: node.advertise,
    wireguardPort: node.wgPort,
  }));

const fromPeerList = (peers: readonly PeerEntry[]): MeshNode[] =>
  peers
    .filter((peer) => peer.status !== "left")
    .map((peer) => ({
      id: String(peer.id),
      publicKey: peer.wgPublicKey,
      meshAddress: peer.meshAddress,
      advertiseAddress: peer.advertise,
      wireguardPort: peer.wgPort,
    }));

const wireguardPidPath = (dataDir: string) => join(dataDir, "wireguard.pid");

/**
 * Ends the wireguard-go that an earlier agent of this data dir left running (a killed agent's child
 * outlives it and keeps the interface), so the new agent can take the interface over.
 */
async function reclaimInterface(dataDir: string, iface: string): Promise<void> {
  const pid = Number((await readFile(wireguardPidPath(dataDir), "utf8").catch(() => "")).trim());
  if (!Number.isInteger(pid) || pid <= 0) return;
  const commandLine = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  if (!commandLine.split("\0").includes(iface)) return;
  process.kill(pid, "SIGTERM");
  if (!(await pollFor(() => !existsSync(`/proc/${pid}`), 3000, 50))) process.kill(pid, "SIGKILL");
}

export async function startNodeMesh(
  dataDir: string,
  config: NodeConfig,
  secrets: NodeSecrets,
  log: Log,
): Promise<NodeMesh> {
  await reclaimInterface(dataDir, config.meshInterface);
  // Replaced atomically: readers (the next agent's reclaimInterface, benchmarks) never see it empty.
  const notePid = (pid: number) =>
    writeSecretFile(wireguardPidPath(dataDir), `${pid}\n`).catch((error: Error) =>
      log.warn(`mesh: cannot record wireguard-go's pid: ${error.message}`),
    );
  const netifBinary = await resolveBinary("mill-netif").catch(() => undefined);
  const mesh: Mesh = await startMesh({
    iface: config.meshInterface,
    privateKey: secrets.wgPrivateKey,
    listenPort: config.wgPort,
    address: config.meshInterfaceAddress,
    wgBinary: await resolveBinary("wireguard-go"),
    ...(netifBinary ? { netifBinary } : {}),
    onEvent: (event) => {
      if (event.type === "started") void notePid(event.pid);
      else log.warn(`wireguard: ${JSON.stringify(event)}`);
    },
  });
  const self = String(config.nodeId);
  let appliedVersion = -1;
  let observed = new Map<string, PeerObservation>();
  let pending: ClusterState | undefined;
  let running: Promise<void> | undefined;

  async function apply(version: number, nodes: MeshNode[]): Promise<void> {
    const diff = await mesh.apply(peersFor(self, nodes));
    appliedVersion = version;
    const changes = [
      ...diff.added.map((key) => `+${key.slice(0, 8)}`),
      ...diff.removed.map((key) => `-${key.slice(0, 8)}`),
      ...diff.changed.map((key) => `~${key.slice(0, 8)}`),
    ];
    if (changes.length > 0) log.info(`mesh peers ${changes.join(" ")} (version ${version})`);
  }

  /** Applies the newest requested state, one UAPI exchange at a time. */
  function drain(): Promise<void> {
    running ??= (async () => {
      while (pending) {
        const state = pending;
        pending = undefined;
        try {
          await apply(state.peersVersion, fromState(state));
        } catch (error) {
          log.warn(`mesh: ${errorMessage(error)}`);
        }
      }
      running = undefined;
    })();
    return running;
  }

  // A node that has just joined has no replicated state yet: the join answer's peers come first.
  if (config.seeds.length > 0) await apply(0, fromPeerList(config.seeds));

  return {
    sync(state) {
      if (state.nodes.size === 0 || state.peersVersion === appliedVersion) return;
      pending = state;
      void drain();
    },
    async applyPeerList(version, peers) {
      if (version <= appliedVersion) return;
      await apply(version, fromPeerList(peers));
    },
    async observe() {
      const peers = await mesh.status();
      observed = new Map(
        peers.map((peer) => [
          peer.publicKey,
          {
            ...(peer.endpoint ? { endpoint: peer.endpoint } : {}),
            ...(peer.lastHandshakeMs > 0 ? { lastHandshakeAt: peer.lastHandshakeMs } : {}),
          },
        ]),
      );
    },
    peers: () => observed,
    get appliedVersion() {
      return appliedVersion;
    },
    get pid() {
      return mesh.pid;
    },
    stop: () => mesh.stop(),
  };
}
