/**
 * What `mill --version` prints: Mill's version, what this executable carries inside (the Node
 * runtime, the embedded wireguard-go), so an operator can tell whether a host runs a patched build,
 * and the protocol version it speaks to other nodes (which builds can run side by side).
 * Owns: that text. Must not touch: how the versions are recorded (lib/platform/assets.ts).
 */
import process from "node:process";
import { embeddedVersions } from "../platform/assets.ts";
import { platform } from "../platform/index.ts";
import { formatProtocol, PROTOCOL_VERSION } from "../shared/protocol.ts";

/** `mill 0.1.0`, then the runtime, the embedded wireguard-go and the protocol, one per line. */
export function versionReport(millVersion: string): string {
  const embedded = embeddedVersions();
  const runtime =
    platform.runtime === "deno"
      ? `deno ${(globalThis as { Deno?: { version: { deno: string } } }).Deno?.version.deno}`
      : `node ${process.version}`;
  const lines = [`mill ${millVersion}`];
  if (embedded) {
    const wg = embedded.wireguardGo;
    lines.push(
      `${runtime} (linux-${embedded.arch})`,
      `wireguard-go ${wg.version} from ${wg.source} (reports ${wg.reports})`,
    );
  } else {
    lines.push(
      `${runtime}, running from source`,
      "wireguard-go not embedded (running from source)",
    );
  }
  lines.push(
    `protocol ${formatProtocol(PROTOCOL_VERSION)} (works with nodes of protocol ${PROTOCOL_VERSION.major}.x)`,
  );
  return `${lines.join("\n")}\n`;
}
