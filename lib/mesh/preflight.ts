/**
 * Checks that the userspace WireGuard interface can start here, and says exactly how to fix it when not.
 * Owns: the decision over gathered facts (pure) and a thin gatherer. Must not touch: anything it
 * checks (it creates no directory, device or socket).
 */
import { constants } from "node:fs";
import { access, readFile, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { DEFAULT_SOCKET_DIR, UapiClient, uapiSocketPath } from "./uapi.ts";

export const CAP_NET_ADMIN_BIT = 12n;

/** The fixes, shared with the explanations of wireguard-go's own start-up errors. */
export const FIX = {
  capability:
    'grant CAP_NET_ADMIN: Docker `--cap-add NET_ADMIN --device /dev/net/tun`; systemd `AmbientCapabilities=CAP_NET_ADMIN`; Kubernetes securityContext.capabilities.add ["NET_ADMIN"] plus the /dev/net/tun device',
  tunMissing:
    "provide the TUN device: Docker `--device /dev/net/tun`; Kubernetes a hostPath CharDevice volume for /dev/net/tun; a VM `modprobe tun`",
  tunNotCharacter: "recreate it: `rm /dev/net/tun && mknod /dev/net/tun c 10 200`",
  socketDir: (dir: string) =>
    `make ${dir} writable for this user (run as root, or \`mkdir -p ${dir}\` with write access; in a container mount a writable /var/run)`,
  nameInUse: "stop the other WireGuard on it, or choose another interface name",
} as const;

export interface PreflightFacts {
  readonly tun: "character-device" | "missing" | "other";
  /** The effective capability mask from /proc/self/status; undefined when it cannot be read. */
  readonly capEff: bigint | undefined;
  readonly socketDir: "writable" | "creatable" | "not-writable";
  /** Something answers UAPI on the interface's socket. */
  readonly socketAnswers: boolean;
  /** A network interface of that name already exists in this namespace. */
  readonly interfaceExists: boolean;
}

/** One line per problem, each with its fix; empty when wireguard-go can start. */
export function preflightProblems(
  iface: string,
  facts: PreflightFacts,
  socketDir = DEFAULT_SOCKET_DIR,
): string[] {
  const problems: string[] = [];
  if (facts.tun === "missing") problems.push(`/dev/net/tun does not exist: ${FIX.tunMissing}`);
  if (facts.tun === "other")
    problems.push(`/dev/net/tun is not a character device: ${FIX.tunNotCharacter}`);
  if (facts.capEff !== undefined && ((facts.capEff >> CAP_NET_ADMIN_BIT) & 1n) === 0n) {
    problems.push(
      `CAP_NET_ADMIN is not in effect, and wireguard-go needs it to create ${iface}: ${FIX.capability}`,
    );
  }
  if (facts.socketDir === "not-writable") {
    problems.push(
      `${socketDir} cannot be created or written, so wireguard-go cannot open its UAPI socket: ${FIX.socketDir(socketDir)}`,
    );
  }
  if (facts.socketAnswers) {
    problems.push(
      `interface name ${iface} is in use (${uapiSocketPath(iface, socketDir)} answers): ${FIX.nameInUse}`,
    );
  } else if (facts.interfaceExists) {
    problems.push(
      `a network interface named ${iface} already exists here: ${FIX.nameInUse} (\`ip link del ${iface}\` if it is stale)`,
    );
  }
  return problems;
}

export function parseCapEff(procStatus: string): bigint | undefined {
  const match = /^CapEff:\s*([0-9a-fA-F]+)$/m.exec(procStatus);
  return match ? BigInt(`0x${match[1]}`) : undefined;
}

export async function gatherPreflightFacts(
  iface: string,
  socketDir = DEFAULT_SOCKET_DIR,
): Promise<PreflightFacts> {
  const tunStat = await stat("/dev/net/tun").catch(() => undefined);
  const capEff = await readFile("/proc/self/status", "utf8").then(parseCapEff, () => undefined);
  const socketPath = uapiSocketPath(iface, socketDir);
  const socketExists = await exists(socketPath);
  return {
    tun:
      tunStat === undefined
        ? "missing"
        : tunStat.isCharacterDevice()
          ? "character-device"
          : "other",
    capEff,
    socketDir: await socketDirState(socketDir),
    socketAnswers: socketExists && (await new UapiClient(socketPath, 1000).ping()),
    interfaceExists: await exists(`/sys/class/net/${iface}`),
  };
}

/** Throws one error listing every problem (one line each, with its fix). */
export async function preflight(iface: string, socketDir = DEFAULT_SOCKET_DIR): Promise<void> {
  const problems = preflightProblems(
    iface,
    await gatherPreflightFacts(iface, socketDir),
    socketDir,
  );
  if (problems.length > 0) throw new Error(problems.join("\n"));
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

async function socketDirState(dir: string): Promise<PreflightFacts["socketDir"]> {
  if (await exists(dir)) {
    return (await writable(dir)) ? "writable" : "not-writable";
  }
  let parent = dirname(dir);
  while (!(await exists(parent)) && parent !== dirname(parent)) parent = dirname(parent);
  return (await writable(parent)) ? "creatable" : "not-writable";
}

async function writable(path: string): Promise<boolean> {
  return access(path, constants.W_OK).then(
    () => true,
    () => false,
  );
}
