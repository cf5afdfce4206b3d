/**
 * One Mill Raft node as a process, for the raft-vs-etcd benchmark: a trivial key-value state
 * machine, real storage and transport, and a small HTTP endpoint on 127.0.0.1:
 * POST /put (body "key=value", answers once committed and applied; 503 + leader when not the
 * leader), GET /status, POST /add-voter?id=N.
 * Usage: raft-server.ts --id N --dir DIR --raft-port P --http-port P --peers 1=h:p,2=h:p
 *        --tls-dir DIR [--bootstrap]
 * (--tls-dir holds node-N.crt and node-N.key for every peer: member-tls.ts writes them.)
 * Owns: nothing but this process. Must not touch: lib/raft beyond its driver and types.
 */

import { createServer, type ServerResponse } from "node:http";
import { parseArgs } from "node:util";
import { decode, encode } from "cbor-x";
import { startRaftNode } from "../../lib/raft/start.ts";
import { type NodeId, NotLeaderError, type StateMachine } from "../../lib/raft/types.ts";
import { errorMessage } from "../../lib/shared/errors.ts";
import { PROTOCOL_VERSION } from "../../lib/shared/protocol.ts";
import { loadCertificates, transportTls } from "../integration/raft/member-tls.ts";

const { values } = parseArgs({
  options: {
    id: { type: "string" },
    dir: { type: "string" },
    "raft-port": { type: "string" },
    "http-port": { type: "string" },
    peers: { type: "string" },
    "tls-dir": { type: "string" },
    bootstrap: { type: "boolean", default: false },
  },
});

const peers = new Map<NodeId, string>(
  (values.peers ?? "").split(",").map((pair) => {
    const [id, address] = pair.split("=");
    return [Number(id), address!];
  }),
);

const EQUALS = 0x3d;

class KvMachine implements StateMachine {
  private map = new Map<string, Uint8Array>();
  apply(index: number, data: Uint8Array): unknown {
    const split = data.indexOf(EQUALS);
    this.map.set(new TextDecoder().decode(data.subarray(0, split)), data.slice(split + 1));
    return index;
  }
  snapshot(): Uint8Array {
    return encode([...this.map]);
  }
  restore(data: Uint8Array): void {
    this.map = new Map(decode(data));
  }
}

const node = await startRaftNode({
  id: Number(values.id),
  dir: values.dir!,
  stateMachine: new KvMachine(),
  host: "127.0.0.1",
  port: Number(values["raft-port"]),
  peers: (id) => peers.get(id),
  protocol: PROTOCOL_VERSION,
  tls: transportTls(loadCertificates(values["tls-dir"]!, [...peers.keys()]), Number(values.id)),
  bootstrap: values.bootstrap,
});

function reply(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function fail(res: ServerResponse, error: unknown): void {
  if (error instanceof NotLeaderError) reply(res, 503, { leader: error.leader });
  else reply(res, 500, { error: errorMessage(error) });
}

const http = createServer((req, res) => {
  const chunks: Uint8Array[] = [];
  req.on("data", (chunk: Uint8Array) => chunks.push(chunk));
  req.on("end", () => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (url.pathname === "/put") {
      node.propose(Buffer.concat(chunks)).then(
        (index) => reply(res, 200, { index }),
        (error) => fail(res, error),
      );
    } else if (url.pathname === "/status") {
      reply(res, 200, node.status());
    } else if (url.pathname === "/add-voter") {
      node.addVoter(Number(url.searchParams.get("id"))).then(
        () => reply(res, 200, {}),
        (error) => fail(res, error),
      );
    } else reply(res, 404, { error: "unknown path" });
  });
});
http.keepAliveTimeout = 60_000;
http.listen(Number(values["http-port"]), "127.0.0.1");
