/**
 * For reserved-ports.test.ts: dials `host:port` twice with the platform's reservedDialler, as
 * whatever user runs it (the test runs it as nobody), and prints one JSON line: the local port of
 * each connection and every line the dialler logged.
 * Owns: nothing past its own two connections.
 */
import process from "node:process";
import { platform } from "../../../lib/platform/index.ts";

const [host, port] = process.argv.slice(2) as [string, string];
const warnings: string[] = [];
const dial = platform.reservedDialler((line) => warnings.push(line));
const ports: number[] = [];
for (let i = 0; i < 2; i++) {
  const socket = await dial({ host, port: Number(port), timeoutMs: 5_000 });
  ports.push(socket.localPort ?? 0);
  socket.destroy();
}
process.stdout.write(`${JSON.stringify({ ports, warnings })}\n`);
