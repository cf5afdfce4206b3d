/**
 * Which client an address stands for, where a limit counts per client: IPv4 as it is (an
 * IPv4-mapped IPv6 address unwrapped) and IPv6 by its /64, which is what one host usually
 * controls (it can pick any address inside it). A leaf of lib/shared: imports nothing from other
 * rooms. Owns: that key. Must not touch: what a limit does with it.
 */

import { isIPv6 } from "node:net";

/** The key a source counts under: IPv4 as is (IPv4-mapped IPv6 unwrapped), IPv6 by its /64. */
export function sourceKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!isIPv6(address)) return address;
  const [head, tail = ""] = address.toLowerCase().split("%")[0]!.split("::") as [string, string?];
  const front = head === "" ? [] : head.split(":");
  const back = tail === "" ? [] : tail.split(":");
  const groups = address.includes("::")
    ? [...front, ...new Array<string>(8 - front.length - back.length).fill("0"), ...back]
    : front;
  return `${groups
    .slice(0, 4)
    .map((group) => Number.parseInt(group, 16).toString(16))
    .join(":")}::/64`;
}
