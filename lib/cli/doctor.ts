/**
 * `mill doctor`: checks that this host can run a Mill node and shows what Mill would execute: the
 * Node runtime and wireguard-go versions the build embedded, and whether each binary starts.
 * Owns: the report. Must not touch: node state.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { defineCommand } from "citty";
import { consola } from "consola";
import { embeddedVersions, resolveBinary, runtimeDir } from "../platform/assets.ts";
import { platform } from "../platform/index.ts";
import type { AssetName } from "../platform/types.ts";
import { errorMessage } from "../shared/errors.ts";
import { OperationError } from "./errors.ts";

const run = promisify(execFile);

async function checkBinary(name: AssetName, versionArgs: string[]): Promise<string> {
  const path = await resolveBinary(name);
  const { stdout } = await run(path, versionArgs, { timeout: 5000 });
  return `${path} (${stdout.split("\n")[0].trim()})`;
}

export const doctor = defineCommand({
  meta: { name: "doctor", description: "Check that this host can run a Mill node" },
  args: {},
  async run() {
    const embedded = embeddedVersions();
    consola.log(
      `runtime      ${platform.runtime} ${process.version}${embedded ? ` (embedded, linux-${embedded.arch})` : " (running from source)"}`,
    );
    if (embedded) {
      const wg = embedded.wireguardGo;
      consola.log(
        `embedded     wireguard-go ${wg.version} from ${wg.source} (reports ${wg.reports})`,
      );
    }
    consola.log(`runtime dir  ${runtimeDir()}`);
    const failures: string[] = [];
    for (const [label, name, args] of [
      ["wireguard  ", "wireguard-go", ["--version"]],
      ["netif      ", "mill-netif", ["--version"]],
    ] as const) {
      try {
        consola.log(`${label}  ${await checkBinary(name, [...args])}`);
      } catch (error) {
        const reason = errorMessage(error).split("\n")[0];
        consola.log(`${label}  FAILED: ${reason}`);
        failures.push(name);
      }
    }
    if (failures.length > 0) {
      throw new OperationError(`${failures.join(", ")} cannot run on this host`);
    }
  },
});
