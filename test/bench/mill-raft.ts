/**
 * Mill's Raft as test/bench/raft-vs-etcd.ts drives it: three raft-server.ts processes, bundled
 * from a checkout (this one, or BENCH_BASELINE's for a side-by-side run against another commit).
 * A write is one HTTP/1.1 POST on a kept-alive connection to the leader: its raw body goes to
 * `propose`, and the answer comes once the entry is committed and applied (a `Map.set`).
 * Owns: building and launching those processes, and their HTTP client. Must not touch: the
 * measurement (raft-vs-etcd.ts).
 */

import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { join } from "node:path";
import { build } from "esbuild";
import { eventually } from "../e2e/harness.ts";
import { memberCertificates, saveCertificates } from "../integration/raft/member-tls.ts";
import { HOST, type KvSystem, logTo, type Member, makeMembers, VALUE } from "./kv-system.ts";

const repo = new URL("../..", import.meta.url).pathname;

function http(
  port: number,
  method: string,
  path: string,
  body: string,
  agent: Agent | undefined,
  timeoutMs: number,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: HOST,
        port,
        method,
        path,
        agent,
        timeout: timeoutMs,
        headers: { "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text += chunk;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}

/**
 * `checkout` is the root of the source tree whose lib/ the servers run; a checkout without its own
 * node_modules borrows this one's.
 */
export async function millRaftSystem(
  work: string,
  name: string,
  checkout = repo,
): Promise<KvSystem> {
  const members = await makeMembers();
  const script = join(work, `raft-server-${members[0]!.peerPort}.mjs`);
  await build({
    entryPoints: [join(checkout, "test/bench/raft-server.ts")],
    bundle: true,
    platform: "node",
    format: "esm",
    outfile: script,
    nodePaths: [join(repo, "node_modules")],
    // Left out, so the require fails in the temp dir and cbor-x falls back to pure JS as shipped.
    // (Aliasing it to an empty module makes cbor-x call a missing extractStrings and fail.)
    external: ["cbor-extract"],
    logLevel: "error",
  });
  const peers = members.map((m) => `${m.id}=${HOST}:${m.peerPort}`).join(",");
  // Mutual TLS with one key per member, when that checkout's transport has it.
  const tlsDir = join(work, `tls-${members[0]!.peerPort}`);
  const withTls = readFileSync(join(checkout, "test/bench/raft-server.ts"), "utf8").includes(
    "tls-dir",
  );
  if (withTls) saveCertificates(tlsDir, memberCertificates(members.map((m) => m.id)));
  const status = async (m: Member) =>
    JSON.parse((await http(m.clientPort, "GET", "/status", "", undefined, 1000)).body) as {
      role: string;
      term: number;
      leader: number;
    };
  const statusIfUp = (m: Member) => status(m).catch(() => undefined);
  return {
    name,
    members,
    launch(m, first) {
      const log = logTo(work, `${name.replace(/\W+/g, "-")}-${m.id}`);
      return spawn(
        process.execPath,
        [
          script,
          "--id",
          `${m.id}`,
          "--dir",
          join(work, `raft-${m.peerPort}`),
          "--raft-port",
          `${m.peerPort}`,
          "--http-port",
          `${m.clientPort}`,
          "--peers",
          peers,
          ...(withTls ? ["--tls-dir", tlsDir] : []),
          ...(first && m.id === 1 ? ["--bootstrap"] : []),
        ],
        { stdio: ["ignore", log, log] },
      );
    },
    async form() {
      const first = members[0]!;
      await eventually(`${name} node 1 to lead`, async () =>
        (await statusIfUp(first))?.role === "leader" ? true : undefined,
      );
      for (const m of members.slice(1)) {
        await eventually(`${name} node ${m.id} to listen`, () => statusIfUp(m));
        const res = await http(
          first.clientPort,
          "POST",
          `/add-voter?id=${m.id}`,
          "",
          undefined,
          60_000,
        );
        if (res.status !== 200) throw new Error(`add-voter ${m.id}: ${res.body}`);
      }
    },
    async findLeader() {
      for (const m of members.filter((x) => x.process)) {
        if ((await statusIfUp(m))?.role === "leader") return m;
      }
      return undefined;
    },
    async state(m) {
      const s = await status(m);
      return { term: s.term, hasLeader: s.leader !== 0 };
    },
    writer(m, concurrency, timeoutMs) {
      const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
      return {
        async put(key) {
          const res = await http(m.clientPort, "POST", "/put", `${key}=${VALUE}`, agent, timeoutMs);
          if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${res.body}`);
        },
        close: () => agent.destroy(),
      };
    },
    close() {},
  };
}
