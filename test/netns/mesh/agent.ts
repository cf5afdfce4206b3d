/**
 * A tiny mesh node for namespace tests, run as `ip netns exec NS node --import tsx agent.ts`.
 * Reads its options as the first JSON line on stdin (the private key never goes on a command line),
 * then JSON commands, one a line; writes JSON replies and supervisor events, one a line.
 * mode "mesh" runs startMesh; mode "wireguard" runs the bare supervisor (no preflight), so tests
 * can see wireguard-go's own start-up errors explained.
 */
import process from "node:process";
import { createInterface } from "node:readline";
import { startMesh } from "../../../lib/mesh/index.ts";
import { startWireguard } from "../../../lib/mesh/wireguard.ts";
import { doublingDelays } from "../../../lib/shared/backoff.ts";
import { errorMessage } from "../../../lib/shared/errors.ts";

const say = (message: object) => process.stdout.write(`${JSON.stringify(message)}\n`);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const options = JSON.parse((await lines.next()).value as string);
const restartPolicy = { delaysMs: doublingDelays(200, 2000), stableMs: 30_000 };
try {
  if (options.mode === "wireguard") {
    await startWireguard({
      iface: options.iface,
      wgBinary: options.wgBinary,
      address: options.address,
      config: { privateKey: options.privateKey, listenPort: options.listenPort, peers: [] },
    });
    say({ error: "wireguard-go started where it should not have" });
    process.exit(1);
  }
  const mesh = await startMesh({ ...options, restartPolicy, onEvent: (event) => say({ event }) });
  say({ ready: true, pid: mesh.pid, publicKey: mesh.publicKey });
  for (;;) {
    const next = await lines.next();
    if (next.done) break;
    const command = JSON.parse(next.value);
    try {
      if (command.op === "apply") say({ op: "apply", diff: await mesh.apply(command.peers) });
      else if (command.op === "status")
        say({ op: "status", peers: await mesh.status(), pid: mesh.pid });
      else if (command.op === "stop") break;
    } catch (error) {
      say({ op: command.op, error: errorMessage(error) });
    }
  }
  await mesh.stop();
  say({ stopped: true });
} catch (error) {
  say({ error: errorMessage(error) });
  process.exitCode = 1;
}
