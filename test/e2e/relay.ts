/**
 * A TCP relay that takes a port away from a joining node at the one moment that matters: after
 * the joiner's host checks, before its node starts. A join's first connection to the cluster is
 * its registration, which comes after those checks, and its node waits for the config the answer
 * carries; so a hook run on the relay's first connection, before a byte is relayed, lands between
 * the two every time.
 *
 * Also a script, for a joiner in a network namespace (the relay must run in that namespace):
 *   node --import tsx test/e2e/relay.ts LISTEN_IP:PORT TARGET_IP:PORT SQUAT_IP:PORT
 * relays LISTEN to TARGET and, on the first connection, first listens on SQUAT (until it ends);
 * it prints "listening" once it accepts connections.
 * Owns: the sockets it opens. Must not touch: anything else.
 */
import { once } from "node:events";
import { connect, createServer, type Server } from "node:net";
import { pathToFileURL } from "node:url";

export interface Address {
  readonly host: string;
  readonly port: number;
}

/** Relays connections to `listen` on to `target`; `onFirst` runs before the first is relayed. */
export async function relay(
  listen: Address,
  target: Address,
  onFirst: () => Promise<void>,
): Promise<Server> {
  let first: Promise<void> | undefined;
  const server = createServer((client) => {
    client.pause();
    first ??= onFirst();
    void first.then(() => {
      const upstream = connect(target);
      client.pipe(upstream).pipe(client);
      client.resume();
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on("error", end).on("close", end);
      upstream.on("error", end).on("close", end);
    });
  });
  server.listen(listen.port, listen.host);
  await once(server, "listening");
  return server;
}

/** Listens on `address` (a port a node needs) with nothing behind it; resolves once it does. */
export async function squat(address: Address): Promise<Server> {
  const server = createServer();
  server.listen(address.port, address.host);
  await once(server, "listening");
  return server;
}

function parseAddress(text: string | undefined): Address {
  const [host, port] = (text ?? "").split(":");
  if (!host || !port) throw new Error(`expected IPV4:PORT, got ${JSON.stringify(text)}`);
  return { host, port: Number(port) };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [listen, target, taken] = process.argv.slice(2).map(parseAddress);
  await relay(listen!, target!, async () => {
    await squat(taken!);
  });
  console.log("listening");
}
