/**
 * An attacker inside a network namespace, for attacks.test.ts: started as
 * `ip netns exec NS [setpriv --reuid=nobody …] node --import tsx attacker.ts`, so it is a local
 * user of that namespace's node (or a neighbour in a namespace of its own). Reads JSON commands,
 * one a line, and answers each with one JSON line carrying the same `op` (agent-client.ts's Agent
 * speaks this). Keys it is to show arrive on stdin, never on a command line.
 * Owns: the connections it opens. Must not touch: anything else.
 */
import { request } from "node:https";
import { connect, type Socket } from "node:net";
import process from "node:process";
import { createInterface } from "node:readline";
import { createNodeIdentity } from "../../../lib/identity/node-key.ts";
import type { ClusterIdentity } from "../../../lib/identity/x509.ts";
import { errorMessage } from "../../../lib/shared/errors.ts";
import {
  closed,
  forged,
  framesOf,
  HEADER_64_MIB,
  type RaftTarget,
  tcpTo,
  tlsTo,
} from "../../e2e/raft-attacks.ts";
import { type Connections, heldOpen, untilAccepted } from "../../shared/tcp-table.ts";

interface Command {
  readonly op: string;
  readonly host: string;
  readonly port?: number;
  /** Raft: "stranger" shows a key made here; a key pair shows that; absent is clear TCP. */
  readonly as?: "stranger" | ClusterIdentity;
  readonly from: number;
  readonly to: number;
  readonly count: number;
  /** `https`: keep sending for this long instead of `count` times. */
  readonly forMs?: number;
  readonly header?: boolean;
  readonly path: string;
  readonly method?: string;
  readonly headers?: Record<string, string>;
}

const say = (message: object) => process.stdout.write(`${JSON.stringify(message)}\n`);
/** Connections `hold` opened, until `release`. */
const held: Socket[] = [];

/** A closed connection that lived shorter than this was refused on arrival, not timed out. */
const REFUSED_WITHIN_MS = 500;
/** The pause before a refused connection is opened again (a held one is reopened at once). */
const REFUSED_PAUSE_MS = 100;

/** One `siege`: its connections, how many are open now, and how many the node refused. */
interface Siege {
  readonly sockets: Set<Socket>;
  open: number;
  refused: number;
  lifted: boolean;
}
/** Sieges by "host:port", until `lift`. */
const sieges = new Map<string, Siege>();

/**
 * Keeps `count` clear TCP connections to `host:port` open: each one the node closes is opened
 * again, at once when the node had held it (its slot is free again), after REFUSED_PAUSE_MS when
 * it was refused on arrival; so the source's slots stay full for as long as the siege lasts.
 */
function siege(command: Command): void {
  const state: Siege = { sockets: new Set(), open: 0, refused: 0, lifted: false };
  sieges.set(`${command.host}:${command.port}`, state);
  const open = () => {
    if (state.lifted) return;
    const socket = connect({ host: command.host, port: command.port! });
    const at = Date.now();
    state.sockets.add(socket);
    socket.on("error", () => socket.destroy());
    socket.once("connect", () => {
      state.open++;
      socket.once("close", () => state.open--);
    });
    socket.once("close", () => {
      state.sockets.delete(socket);
      const refused = Date.now() - at < REFUSED_WITHIN_MS;
      if (refused) state.refused++;
      setTimeout(open, refused ? REFUSED_PAUSE_MS : 0);
    });
  };
  for (let i = 0; i < command.count; i++) open();
}

function dial(command: Command): Promise<Socket> {
  const target: RaftTarget = {
    host: command.host,
    ...(command.port ? { port: command.port } : {}),
  };
  if (command.as === undefined) return tcpTo(target);
  return tlsTo(target, command.as === "stranger" ? createNodeIdentity() : command.as);
}

/**
 * Our held connections to `host:port`, as this namespace's kernel sees them at the node's end;
 * made from the node's own address (a local user's connections to its mesh address come from it).
 */
function ours(command: Command): Connections {
  const ports = new Set(held.map((socket) => socket.localPort));
  return {
    address: command.host,
    port: command.port ?? 0,
    from: (remote, remotePort) => remote === command.host && ports.has(remotePort),
  };
}

/** One HTTPS request without a client certificate: its status, or the error that ended it. */
function https(command: Command): Promise<string> {
  return new Promise((resolve) => {
    const req = request({
      host: command.host,
      port: command.port,
      path: command.path,
      method: command.method ?? "GET",
      headers: command.headers ?? {},
      rejectUnauthorized: false,
      agent: false,
    });
    req.on("response", (response) => {
      response.resume();
      resolve(String(response.statusCode));
    });
    req.on("error", (error) => resolve(`error ${(error as NodeJS.ErrnoException).code}`));
    req.end();
  });
}

async function run(command: Command): Promise<object> {
  switch (command.op) {
    case "whoami":
      return { uid: process.getuid?.() };
    case "frames": {
      const socket = await dial(command);
      // Read now: a closed socket no longer knows its address.
      const local = socket.localAddress;
      socket.write(framesOf(forged(command.from, command.to)));
      await closed(socket);
      return { local };
    }
    case "hold": {
      const opened = await Promise.all(
        Array.from({ length: command.count }, () => dial(command).catch(() => undefined)),
      );
      for (const socket of opened) {
        if (!socket) continue;
        if (command.header) socket.write(HEADER_64_MIB);
        held.push(socket);
      }
      return { opened: held.length };
    }
    case "accepted":
      // Once the node's process has accepted every one, it has admitted or refused each.
      await untilAccepted(ours(command));
      return {};
    case "held":
      return { established: heldOpen(ours(command)) };
    case "settled":
      await Promise.all(held.map(closed));
      return { closed: held.length };
    case "release":
      for (const socket of held.splice(0)) socket.destroy();
      return {};
    case "siege":
      siege(command);
      return {};
    case "siege-state": {
      const state = sieges.get(`${command.host}:${command.port}`);
      return { open: state?.open ?? 0, refused: state?.refused ?? 0 };
    }
    case "lift":
      for (const state of sieges.values()) {
        state.lifted = true;
        for (const socket of state.sockets) socket.destroy();
      }
      sieges.clear();
      return {};
    case "https": {
      const statuses: string[] = [];
      const end = command.forMs === undefined ? undefined : Date.now() + command.forMs;
      while (end === undefined ? statuses.length < command.count : Date.now() < end) {
        statuses.push(await https(command));
      }
      return { statuses };
    }
    default:
      throw new Error(`unknown op ${command.op}`);
  }
}

for await (const line of createInterface({ input: process.stdin })) {
  const command = JSON.parse(line) as Command;
  try {
    say({ op: command.op, ...(await run(command)) });
  } catch (error) {
    say({ op: command.op, error: errorMessage(error) });
  }
}
