/**
 * Node-to-node TCP connections from a reserved source port (lib/shared/reserved-ports.ts decides
 * which port next and when to give up): the socket work at the edge. Node's net module; the Deno
 * adapter runs the same code over Deno's node:net, which reports a port already in use for that
 * peer with its own error code (deno/index.ts).
 * Owns: binding and connecting those sockets, and the one line saying the reserve is not in use.
 * Must not touch: what is sent over them, TLS, which pool a peer counts them in.
 */
import { createConnection, type Socket } from "node:net";
import {
  afterFailedPort,
  type Dial,
  type DialTarget,
  firstReservedPort,
  type PortFailure,
} from "../../shared/reserved-ports.ts";

/** Error codes of a failed bind or connect, by what they mean for a reserved port. */
export interface PortErrorCodes {
  /** Someone holds the port (or the same port to the same peer): try the next one. */
  readonly taken: readonly string[];
  /** This process may not bind low ports: dial from ordinary ports from now on. */
  readonly forbidden: readonly string[];
}

export const NODE_PORT_ERRORS: PortErrorCodes = {
  taken: ["EADDRINUSE", "EADDRNOTAVAIL"],
  forbidden: ["EACCES", "EPERM"],
};

type Attempt = { readonly socket: Socket } | { readonly failure: PortFailure };

/** One connection to `target`, from `localPort` (else an ephemeral port), by `deadline`. */
function attempt(
  target: DialTarget,
  localPort: number | undefined,
  deadline: number,
  codes: PortErrorCodes,
): Promise<Attempt> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({
      host: target.host,
      port: target.port,
      ...(target.localAddress === undefined ? {} : { localAddress: target.localAddress }),
      ...(localPort === undefined ? {} : { localPort }),
    });
    const timer = setTimeout(
      () => {
        socket.destroy();
        reject(
          new Error(`no connection to ${target.host}:${target.port} within ${target.timeoutMs} ms`),
        );
      },
      Math.max(0, deadline - Date.now()),
    );
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.off("error", failed);
      resolve({ socket });
    });
    function failed(error: NodeJS.ErrnoException): void {
      clearTimeout(timer);
      socket.destroy();
      const code = error.code ?? "";
      if (localPort !== undefined && codes.taken.includes(code)) resolve({ failure: "taken" });
      else if (localPort !== undefined && codes.forbidden.includes(code))
        resolve({ failure: "forbidden" });
      else reject(error);
    }
    socket.once("error", failed);
  });
}

/**
 * A Dial whose connections leave from a reserved port, tried from a random one onwards; when
 * this process may not bind one (no root, no CAP_NET_BIND_SERVICE) it and every later dial use
 * an ordinary port, and `warn` hears that once; likewise once when a dial found no free port.
 */
export function reservedDialler(
  warn: (line: string) => void,
  codes: PortErrorCodes = NODE_PORT_ERRORS,
  random: () => number = Math.random,
): Dial {
  let forbidden = false;
  let toldExhausted = false;
  return async (target) => {
    const deadline = Date.now() + target.timeoutMs;
    let port = firstReservedPort(random());
    for (let tries = 1; !forbidden; tries++) {
      const tried = await attempt(target, port, deadline, codes);
      if ("socket" in tried) return tried.socket;
      const next = afterFailedPort(port, tries, tried.failure);
      if ("port" in next) {
        port = next.port;
        continue;
      }
      if (next.forbidden) forbidden = true;
      if (next.forbidden || !toldExhausted) {
        toldExhausted ||= !next.forbidden;
        warn(
          `node-to-node connections leave from ordinary ports${next.forbidden ? "" : " this time"}: ${next.ephemeral}; peers count them with a local user's connections from this address`,
        );
      }
      break;
    }
    const tried = await attempt(target, undefined, deadline, codes);
    if ("socket" in tried) return tried.socket;
    throw new Error(`cannot connect to ${target.host}:${target.port}`);
  };
}
