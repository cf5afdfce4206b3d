/**
 * The mesh room: this node's userspace WireGuard interface, kept in the desired shape.
 * Owns: the Mesh object other rooms call. Must not touch: cluster state (callers pass peers in),
 * binary discovery (callers pass paths in).
 */

import type { RestartPolicy } from "../shared/backoff.ts";
import { parsePublicKey, publicKeyFromPrivate } from "./keys.ts";
import { checkInterfaceSettings } from "./netif.ts";
import { diffPeers, type PeerDiff } from "./plan.ts";
import { preflight } from "./preflight.ts";
import type { DeviceConfig, PeerConfig, PeerState } from "./uapi.ts";
import { type SupervisorEvent, startWireguard } from "./wireguard.ts";

export interface MeshOptions {
  /** Interface name, unique on the host (UAPI sockets are host-wide), at most 15 characters. */
  readonly iface: string;
  /** base64; a secret. */
  readonly privateKey: string;
  readonly listenPort: number;
  /** This node's interface address in CIDR form, "10.99.0.7/16". */
  readonly address: string;
  readonly wgBinary: string;
  /** mill-netif; iproute2's `ip` is used without it. */
  readonly netifBinary?: string;
  readonly mtu?: number;
  /** How wireguard-go is restarted when it dies (WIREGUARD_RESTART_POLICY by default). */
  readonly restartPolicy?: RestartPolicy;
  /** Start, exit and restart events of wireguard-go, for the log. */
  readonly onEvent?: (event: SupervisorEvent) => void;
  /** Clock for handshake ages; injectable for tests. */
  readonly now?: () => number;
}

export interface PeerStatus extends PeerState {
  /** Milliseconds since the last handshake; undefined when there has been none. */
  readonly handshakeAgeMs: number | undefined;
}

export interface Mesh {
  readonly publicKey: string;
  /** The running wireguard-go's pid; undefined while it restarts. */
  readonly pid: number | undefined;
  /** Makes the peers exactly these; returns what changed against the previous desired peers. */
  apply(peers: readonly PeerConfig[]): Promise<PeerDiff>;
  status(): Promise<PeerStatus[]>;
  stop(): Promise<void>;
}

export async function startMesh(options: MeshOptions): Promise<Mesh> {
  const publicKey = publicKeyFromPrivate(options.privateKey);
  checkInterfaceSettings({ iface: options.iface, address: options.address, mtu: options.mtu });
  await preflight(options.iface);
  const now = options.now ?? Date.now;
  let desired: DeviceConfig = {
    privateKey: options.privateKey,
    listenPort: options.listenPort,
    peers: [],
  };
  const supervisor = await startWireguard({
    iface: options.iface,
    wgBinary: options.wgBinary,
    netifBinary: options.netifBinary,
    address: options.address,
    mtu: options.mtu,
    restartPolicy: options.restartPolicy,
    onEvent: options.onEvent,
    config: desired,
  });
  return {
    publicKey,
    get pid() {
      return supervisor.pid;
    },
    async apply(peers) {
      checkPeers(publicKey, peers);
      const next = { ...desired, peers: [...peers] };
      const diff = diffPeers(desired.peers, next.peers);
      // The supervisor keeps `next` for its restarts even when this attempt fails, so it is desired now.
      desired = next;
      await supervisor.apply(next);
      return diff;
    },
    async status() {
      const state = await supervisor.uapi.get();
      const at = now();
      return state.peers.map((peer) => ({
        ...peer,
        handshakeAgeMs:
          peer.lastHandshakeMs === 0 ? undefined : Math.max(0, at - peer.lastHandshakeMs),
      }));
    },
    stop: () => supervisor.stop(),
  };
}

/** WireGuard silently accepts both of these, and both break the mesh. */
function checkPeers(ownKey: string, peers: readonly PeerConfig[]): void {
  const seen = new Set<string>();
  for (const peer of peers) {
    parsePublicKey(peer.publicKey);
    if (peer.publicKey === ownKey)
      throw new Error(`peer list contains this node's own key ${ownKey}: remove it`);
    if (seen.has(peer.publicKey))
      throw new Error(`peer list contains ${peer.publicKey} twice: merge its entries`);
    seen.add(peer.publicKey);
  }
}
