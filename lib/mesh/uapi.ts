/**
 * The WireGuard UAPI (cross-platform userspace interface) over wireguard-go's unix socket.
 * Owns: rendering a desired config to UAPI text, parsing replies, and the socket round trips.
 * Must not touch: processes, interface addresses, logs (requests carry the private key).
 */
import { createConnection, isIP } from "node:net";
import { errorMessage } from "../shared/errors.ts";
import { base64KeyToHex, hexKeyToBase64, parsePrivateKey, parsePublicKey } from "./keys.ts";

export const DEFAULT_SOCKET_DIR = "/var/run/wireguard";
/** Sent for every peer: keeps NAT mappings open and lets a restarted side re-handshake unprompted. */
export const KEEPALIVE_SECONDS = 25;

export interface PeerConfig {
  /** base64 */
  readonly publicKey: string;
  /** "ip:port" or "[ipv6]:port"; absent for a peer that only dials in. */
  readonly endpoint?: string;
  readonly allowedIps: readonly string[];
}

export interface DeviceConfig {
  /** base64; a secret. */
  readonly privateKey: string;
  readonly listenPort: number;
  readonly peers: readonly PeerConfig[];
}

export interface PeerState {
  readonly publicKey: string;
  readonly endpoint?: string;
  readonly allowedIps: readonly string[];
  /** Unix time in milliseconds of the last handshake; 0 when there has been none. */
  readonly lastHandshakeMs: number;
  readonly persistentKeepalive: number;
  readonly rxBytes: number;
  readonly txBytes: number;
}

export interface DeviceState {
  /** base64; absent before one is set. A secret. */
  readonly privateKey?: string;
  readonly listenPort: number;
  readonly peers: readonly PeerState[];
}

export interface UapiReply {
  readonly errno: number;
  readonly entries: readonly (readonly [string, string])[];
}

export function uapiSocketPath(iface: string, dir: string = DEFAULT_SOCKET_DIR): string {
  return `${dir}/${iface}.sock`;
}

/**
 * The complete desired state as one `set` request; validates everything before any byte is sent.
 * Given the device's `current` state, peers are updated in place and only departed ones removed
 * (what `wg syncconf` does): `replace_peers=true` would drop every session, forcing each peer to
 * handshake again and resetting its counters on every peer-list change. Every desired peer is
 * still sent whole (`replace_allowed_ips=true`), so the result is the desired state either way.
 */
export function renderSetRequest(config: DeviceConfig, current?: DeviceState): string {
  parsePrivateKey(config.privateKey);
  checkPort(config.listenPort);
  const lines = ["set=1"];
  // Re-sending an unchanged key or port is skipped too: neither should disturb a running device.
  if (current?.privateKey !== config.privateKey) {
    lines.push(`private_key=${base64KeyToHex(config.privateKey)}`);
  }
  if (current?.listenPort !== config.listenPort) lines.push(`listen_port=${config.listenPort}`);
  if (current === undefined) lines.push("replace_peers=true");
  const wanted = new Set(config.peers.map((peer) => peer.publicKey));
  for (const peer of current?.peers ?? []) {
    if (!wanted.has(peer.publicKey)) {
      lines.push(`public_key=${base64KeyToHex(peer.publicKey)}`, "remove=true");
    }
  }
  for (const peer of config.peers) {
    parsePublicKey(peer.publicKey);
    lines.push(`public_key=${base64KeyToHex(peer.publicKey)}`, "replace_allowed_ips=true");
    if (peer.endpoint !== undefined) lines.push(`endpoint=${checkEndpoint(peer.endpoint)}`);
    lines.push(`persistent_keepalive_interval=${KEEPALIVE_SECONDS}`);
    for (const allowed of peer.allowedIps) lines.push(`allowed_ip=${checkAllowedIp(allowed)}`);
  }
  return `${lines.join("\n")}\n\n`;
}

export const GET_REQUEST = "get=1\n\n";

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`invalid WireGuard listen port ${port}: expected 0-65535`);
  }
}

function checkEndpoint(endpoint: string): string {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(endpoint);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  const family = host === undefined ? 0 : isIP(host);
  if (
    !match ||
    family === 0 ||
    (family === 6) !== (match[1] !== undefined) ||
    port < 1 ||
    port > 65535
  ) {
    throw new Error(
      `invalid WireGuard endpoint ${JSON.stringify(endpoint)}: expected IP:port or [IPv6]:port (host names are rejected)`,
    );
  }
  return endpoint;
}

function checkAllowedIp(cidr: string): string {
  const match = /^([^/]+)\/(\d{1,3})$/.exec(cidr);
  const family = match ? isIP(match[1]!) : 0;
  const prefix = Number(match?.[2]);
  if (family === 0 || prefix > (family === 4 ? 32 : 128)) {
    throw new Error(
      `invalid allowed IP ${JSON.stringify(cidr)}: expected address/prefix, e.g. 10.99.0.7/32`,
    );
  }
  return cidr;
}

/** Parses one reply; returns undefined while it is incomplete (no `errno=` line followed by a blank line yet). */
export function parseReply(text: string): UapiReply | undefined {
  const end = text.indexOf("\n\n");
  if (end < 0) return undefined;
  const entries: [string, string][] = [];
  let errno: number | undefined;
  for (const line of text.slice(0, end).split("\n")) {
    const eq = line.indexOf("=");
    if (eq <= 0) throw new Error(`malformed UAPI reply line ${JSON.stringify(line.slice(0, 80))}`);
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key === "errno") errno = Number(value);
    else entries.push([key, value]);
  }
  if (errno === undefined || !Number.isInteger(errno)) {
    throw new Error("malformed UAPI reply: it has no errno line");
  }
  return { errno, entries };
}

/** The device state from a `get` reply's entries: device keys first, then one block per `public_key`. */
export function parseDeviceState(entries: UapiReply["entries"]): DeviceState {
  let privateKey: string | undefined;
  let listenPort = 0;
  const peers: PeerState[] = [];
  let peer: { -readonly [K in keyof PeerState]: PeerState[K] } | undefined;
  let handshakeSeconds = 0;
  let handshakeNanos = 0;
  const finishPeer = () => {
    if (peer === undefined) return;
    peer.lastHandshakeMs = handshakeSeconds * 1000 + Math.floor(handshakeNanos / 1e6);
    peers.push(peer);
  };
  for (const [key, value] of entries) {
    if (key === "public_key") {
      finishPeer();
      handshakeSeconds = 0;
      handshakeNanos = 0;
      peer = {
        publicKey: hexKeyToBase64(value),
        allowedIps: [],
        lastHandshakeMs: 0,
        persistentKeepalive: 0,
        rxBytes: 0,
        txBytes: 0,
      };
    } else if (peer === undefined) {
      if (key === "private_key") privateKey = hexKeyToBase64(value);
      else if (key === "listen_port") listenPort = Number(value);
    } else if (key === "endpoint") peer.endpoint = value;
    else if (key === "allowed_ip") peer.allowedIps = [...peer.allowedIps, value];
    else if (key === "last_handshake_time_sec") handshakeSeconds = Number(value);
    else if (key === "last_handshake_time_nsec") handshakeNanos = Number(value);
    else if (key === "persistent_keepalive_interval") peer.persistentKeepalive = Number(value);
    else if (key === "rx_bytes") peer.rxBytes = Number(value);
    else if (key === "tx_bytes") peer.txBytes = Number(value);
  }
  finishPeer();
  return { privateKey, listenPort, peers };
}

/** Human-readable differences between what was asked and what the device reports; empty when they agree. */
export function compareState(desired: DeviceConfig, actual: DeviceState): string[] {
  const problems: string[] = [];
  if (actual.privateKey !== desired.privateKey) problems.push("the private key differs");
  if (desired.listenPort !== 0 && actual.listenPort !== desired.listenPort) {
    problems.push(`listen port is ${actual.listenPort}, expected ${desired.listenPort}`);
  }
  const actualPeers = new Map(actual.peers.map((peer) => [peer.publicKey, peer]));
  for (const want of desired.peers) {
    const have = actualPeers.get(want.publicKey);
    actualPeers.delete(want.publicKey);
    if (have === undefined) {
      problems.push(`peer ${want.publicKey} is missing`);
      continue;
    }
    if (want.endpoint !== undefined && have.endpoint !== want.endpoint) {
      problems.push(
        `peer ${want.publicKey} endpoint is ${have.endpoint ?? "unset"}, expected ${want.endpoint}`,
      );
    }
    const wantIps = [...want.allowedIps].sort().join(",");
    const haveIps = [...have.allowedIps].sort().join(",");
    if (wantIps !== haveIps) {
      problems.push(`peer ${want.publicKey} allowed IPs are [${haveIps}], expected [${wantIps}]`);
    }
    if (have.persistentKeepalive !== KEEPALIVE_SECONDS) {
      problems.push(
        `peer ${want.publicKey} keepalive is ${have.persistentKeepalive}, expected ${KEEPALIVE_SECONDS}`,
      );
    }
  }
  for (const extra of actualPeers.keys()) problems.push(`unexpected peer ${extra}`);
  return problems;
}

/** What a request was, for error messages, without its secrets. */
function describeSet(config: DeviceConfig): string {
  return `set (listen_port=${config.listenPort}, ${config.peers.length} peer(s))`;
}

export class UapiClient {
  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 5000,
  ) {}

  async get(): Promise<DeviceState> {
    const reply = await this.roundTrip("get", GET_REQUEST);
    if (reply.errno !== 0)
      throw new Error(`UAPI get on ${this.socketPath} failed with errno=${reply.errno}`);
    return parseDeviceState(reply.entries);
  }

  /**
   * Brings the device to the desired state (reading it first, so live sessions survive), then
   * reads it back; throws when the device disagrees.
   */
  async set(desired: DeviceConfig): Promise<DeviceState> {
    renderSetRequest(desired);
    const request = renderSetRequest(desired, await this.get());
    const what = describeSet(desired);
    const reply = await this.roundTrip(what, request);
    if (reply.errno !== 0) {
      throw new Error(
        `UAPI ${what} on ${this.socketPath} failed with errno=${reply.errno}; the device may be partly updated`,
      );
    }
    const state = await this.get();
    const problems = compareState(desired, state);
    if (problems.length > 0) {
      throw new Error(`UAPI ${what} on ${this.socketPath} did not take: ${problems.join("; ")}`);
    }
    return state;
  }

  /** Answers whether anything is listening and speaking UAPI on the socket. */
  async ping(): Promise<boolean> {
    try {
      await this.roundTrip("get", GET_REQUEST);
      return true;
    } catch {
      return false;
    }
  }

  private roundTrip(what: string, request: string): Promise<UapiReply> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(this.socketPath);
      let received = "";
      let settled = false;
      const finish = (error: Error | undefined, reply?: UapiReply) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        if (error) reject(error);
        else resolve(reply!);
      };
      const timer = setTimeout(
        () =>
          finish(
            new Error(`UAPI ${what} on ${this.socketPath}: no reply within ${this.timeoutMs} ms`),
          ),
        this.timeoutMs,
      );
      socket.setEncoding("utf8");
      socket.on("connect", () => socket.write(request));
      socket.on("data", (chunk: string) => {
        received += chunk;
        try {
          const reply = parseReply(received);
          if (reply) finish(undefined, reply);
        } catch (error) {
          finish(new Error(`UAPI ${what} on ${this.socketPath}: ${errorMessage(error)}`));
        }
      });
      socket.on("error", (error: NodeJS.ErrnoException) =>
        finish(
          new Error(
            `cannot reach the WireGuard UAPI socket ${this.socketPath} for ${what} (${error.code ?? error.message}): is wireguard-go running for this interface?`,
          ),
        ),
      );
      socket.on("close", () =>
        finish(
          new Error(
            `wireguard-go closed the UAPI socket ${this.socketPath} without replying to ${what}`,
          ),
        ),
      );
    });
  }
}
