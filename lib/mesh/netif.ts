/**
 * Interface address, MTU and link state for the mesh interface: runs the static mill-netif helper,
 * or iproute2's `ip` when the helper is unavailable; and whether its TUN runs with offloads.
 * Owns: argument validation and the choice of tool. Must not touch: routes, other interfaces.
 */
import { execFile } from "node:child_process";
import { access, constants, readFile } from "node:fs/promises";
import { isIPv4 } from "node:net";
import { basename } from "node:path";

export const DEFAULT_MTU = 1420;

export interface InterfaceSettings {
  readonly iface: string;
  /** "10.99.0.7/16" */
  readonly address: string;
  readonly mtu?: number;
  /** Path to mill-netif; when absent or not executable, `ip` is used. */
  readonly helper?: string;
}

const IFACE_NAME = /^[A-Za-z0-9_.-]{1,15}$/;

/** Throws a one-line error for anything the tools would reject, before running them. */
export function checkInterfaceSettings(settings: InterfaceSettings): void {
  if (!IFACE_NAME.test(settings.iface)) {
    throw new Error(
      `invalid interface name ${JSON.stringify(settings.iface)}: use 1-15 letters, digits, '_', '.', '-'`,
    );
  }
  const [address, prefix, extra] = settings.address.split("/");
  if (
    extra !== undefined ||
    !isIPv4(address ?? "") ||
    !/^\d{1,2}$/.test(prefix ?? "") ||
    Number(prefix) < 1 ||
    Number(prefix) > 32
  ) {
    throw new Error(
      `invalid interface address ${JSON.stringify(settings.address)}: expected IPv4/prefix, e.g. 10.99.0.7/16`,
    );
  }
  const mtu = settings.mtu ?? DEFAULT_MTU;
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535)
    throw new Error(`invalid MTU ${mtu}: expected 68-65535`);
}

/** The commands that apply the settings: the helper alone, or the two `ip` calls. */
export function interfaceCommands(
  settings: InterfaceSettings,
  helperUsable: boolean,
): [string, string[]][] {
  const mtu = String(settings.mtu ?? DEFAULT_MTU);
  if (helperUsable && settings.helper !== undefined) {
    return [[settings.helper, [settings.iface, settings.address, mtu]]];
  }
  return [
    ["ip", ["address", "replace", settings.address, "dev", settings.iface]],
    ["ip", ["link", "set", "dev", settings.iface, "mtu", mtu, "up"]],
  ];
}

/** Sets address, MTU and link up; repeating it is harmless. */
export async function configureInterface(settings: InterfaceSettings): Promise<void> {
  checkInterfaceSettings(settings);
  const helperUsable =
    settings.helper !== undefined &&
    (await access(settings.helper, constants.X_OK).then(
      () => true,
      () => false,
    ));
  for (const [command, args] of interfaceCommands(settings, helperUsable)) {
    await run(command, args);
  }
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, (error, _stdout, stderr) => {
      if ((error as NodeJS.ErrnoException | null)?.code === "ENOENT") {
        reject(
          new Error(`${command} not found: pass the mill-netif helper path, or install iproute2`),
        );
      } else if (error) {
        const reason =
          stderr
            .trim()
            .split("\n")[0]
            ?.replace(/^mill-netif: /, "") || error.message;
        reject(new Error(`${basename(command)} ${args.join(" ")}: ${reason}`));
      } else {
        resolve();
      }
    });
  });
}

/** linux/if_tun.h: the TUN carries a virtio-net header, which its segmentation offloads need. */
export const IFF_VNET_HDR = 0x4000;

/**
 * Whether a TUN's flags (sysfs `tun_flags`, e.g. "0x5001") include the virtio-net header; undefined
 * for text that is not a flags word. wireguard-go from v0.0.20230223 asks for the header and then
 * turns on checksum and TCP segmentation offload; older builds move one MTU-sized packet at a time.
 */
export function offloadsFromTunFlags(text: string): boolean | undefined {
  const trimmed = text.trim();
  if (!/^0x[0-9a-f]{1,8}$/i.test(trimmed)) return undefined;
  return (Number.parseInt(trimmed, 16) & IFF_VNET_HDR) !== 0;
}

/**
 * Whether the TUN `iface` runs with offloads; undefined when sysfs cannot tell (not a TUN, or a
 * sysfs mounted for another network namespace, as in some containers).
 */
export async function tunOffloads(iface: string): Promise<boolean | undefined> {
  const text = await readFile(`/sys/class/net/${iface}/tun_flags`, "utf8").catch(() => undefined);
  return text === undefined ? undefined : offloadsFromTunFlags(text);
}
