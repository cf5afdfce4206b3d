/**
 * A join or init that cannot work fails before anything is committed, with the real executable on
 * loopback (`--mesh none`): an address this host does not have, a busy port, another node's
 * address. Each exits 1 with one line naming the problem, well within the harness's deadline, and
 * leaves no record in the cluster, no process and no data dir. A join whose node cannot start
 * after its registration committed withdraws the registration, with the same outcome; nobody
 * else can withdraw it (the attacker's side), and no member is ever withdrawn.
 */
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { once } from "node:events";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createServer as createHttpsServer, request as httpsRequest } from "node:https";
import type { Server } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { withdrawalStatement } from "../../lib/cluster/validate.ts";
import { createNodeIdentity, signWithNodeKey } from "../../lib/identity/node-key.ts";
import type { ClusterIdentity } from "../../lib/identity/x509.ts";
import { loadNode } from "../../lib/node/config.ts";
import { JOINER, joinBody } from "../unit/cluster/fixtures.ts";
import { LocalCluster } from "./harness.ts";
import { rawRequest } from "./raw-client.ts";
import { relay, squat } from "./relay.ts";

const run = promisify(execFile);

function hasCurl(): boolean {
  try {
    execFileSync("curl", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** curl's body; rejects with curl's error line when it fails (-f: an HTTP error fails too). */
async function curl(args: string[]): Promise<string> {
  try {
    return (await run("curl", ["-sSf", "--max-time", "10", ...args])).stdout;
  } catch (error) {
    throw new Error(String((error as { stderr?: string }).stderr ?? error));
  }
}

/** TEST-NET-1 (RFC 5737): an address no host here has. */
const NOT_HERE = "192.0.2.77";

/** Pids of the processes whose command line names `word` (a data dir: the nodes run there). */
function processesNaming(word: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
    } catch {
      continue; // It exited meanwhile.
    }
    if (argv.includes(word)) pids.push(Number(entry));
  }
  return pids;
}

describe("init and join check the host first", () => {
  const cluster = new LocalCluster();
  let token = "";
  before(async () => {
    token = await cluster.init();
    const second = await cluster.join(2, token);
    assert.equal(second.status, 0, second.stderr);
  });
  after(() => cluster.cleanup());

  /** `mill join` as node-4 on `advertise` through `via` (node 1's address by default). */
  const joinArgs = (advertise: string, via = cluster.address(1)) => [
    "join",
    `${via}:4400`,
    "--token",
    token,
    "--advertise",
    advertise,
    "--name",
    "node-4",
    "--data-dir",
    cluster.dataDir(4),
    "--mesh",
    "none",
    "--no-service",
  ];

  /** Runs `mill join` as node 4 with `extra` flags, and checks that it left nothing behind. */
  async function failedJoin(extra: string[], advertise: string) {
    const result = await cluster.run(
      [...joinArgs(advertise), ...extra],
      // Fails fast: the harness kills a command still running after 10 s.
      { timeoutMs: 10_000 },
    );
    assert.equal(result.status, 1, result.stderr);
    assert.equal(result.stderr.split("\n").filter((line) => line.startsWith("error: ")).length, 1);
    assert.equal(existsSync(cluster.dataDir(4)), false, "no data dir is left behind");
    const status = await cluster.status(1);
    assert.deepEqual(
      status.nodes.map((node) => node.name),
      ["node-1", "node-2"],
      "no registration is left behind",
    );
    return result.stderr;
  }

  test("curl verifies any node with the cluster's certificate as its CA file, without -k", async (t) => {
    if (!hasCurl()) return t.skip("no curl on this host");
    const ca = join(cluster.dataDir(1), "tls.crt");
    const auth = ["-H", `Authorization: Bearer ${token}`];
    const direct = await curl([
      "--cacert",
      ca,
      ...auth,
      `https://${cluster.address(1)}:4400/v1/status`,
    ]);
    assert.equal((JSON.parse(direct) as { leader: string }).leader, "node-1");
    const connectTo = `mill-cluster:4400:${cluster.address(2)}:4400`;
    const other = await curl([
      "--cacert",
      ca,
      "--connect-to",
      connectTo,
      ...auth,
      "https://mill-cluster:4400/v1/nodes",
    ]);
    assert.match(other, /"node-2"/);
    // The attacker's side: a name the certificate does not carry fails verification.
    await assert.rejects(
      curl([
        "--cacert",
        ca,
        "--connect-to",
        `elsewhere:4400:${cluster.address(2)}:4400`,
        ...auth,
        "https://elsewhere:4400/v1/nodes",
      ]),
      /no alternative certificate subject name matches|SSL: no alternative/,
    );
  });

  test("an address this host does not have", async () => {
    const stderr = await failedJoin([], NOT_HERE);
    assert.match(
      stderr,
      /^error: --advertise 192\.0\.2\.77 is not an address of this host \(it has /,
    );
  });

  test("a busy public port, and a busy Raft port", async () => {
    for (const busy of [4400, 4401]) {
      const squatter = await squat({ host: cluster.address(4), port: busy });
      try {
        const stderr = await failedJoin([], cluster.address(4));
        assert.match(stderr, new RegExp(`^error: ${cluster.address(4)}:${busy} is already in use`));
      } finally {
        squatter.close();
      }
    }
  });

  test("another node's address", async () => {
    const stderr = await failedJoin([], cluster.address(2));
    assert.match(stderr, new RegExp(`^error: ${cluster.address(2)}:4400 is already in use`));
  });

  test("a node that cannot start after its registration committed: the join withdraws it", async () => {
    const joiner = cluster.address(4);
    let squatter: Server | undefined;
    // The port is free while the joiner checks its host, and taken once it has registered.
    const proxy = await relay(
      { host: cluster.address(9), port: 4400 },
      { host: cluster.address(1), port: 4400 },
      async () => {
        squatter = await squat({ host: joiner, port: 4400 });
      },
    );
    try {
      const result = await cluster.run(joinArgs(joiner, cluster.address(9)), {
        timeoutMs: 15_000,
      });
      assert.equal(result.status, 1, result.stderr);
      const id = Number(/registered as node (\d+)/.exec(result.stdout + result.stderr)?.[1]);
      assert.ok(id > 0, `the join registered first: ${result.stdout}${result.stderr}`);
      // One line, naming the node's own error.
      const errors = result.stderr.split("\n").filter((line) => line.startsWith("error: "));
      assert.deepEqual(errors, [
        `error: the node exited (code 1) before it was ready: listen EADDRINUSE: address already in use ${joiner}:4400`,
      ]);
      assert.match(
        result.stdout + result.stderr,
        new RegExp(`withdrew its registration as node ${id}`),
      );
      assert.equal(existsSync(cluster.dataDir(4)), false, "no data dir is left behind");
      assert.deepEqual(processesNaming(cluster.dataDir(4)), [], "no node process is left");
      const status = await cluster.status(1);
      assert.deepEqual(
        status.nodes.map((node) => [node.name, node.status]),
        [
          ["node-1", "ready"],
          ["node-2", "ready"],
        ],
        "no registration is left behind",
      );
      // The record was committed and is now removed, not merely never made.
      const member = await rawRequest({
        host: cluster.address(1),
        path: `/v1/members/${id}`,
        headers: { authorization: `Bearer ${token}` },
        from: cluster.address(8),
      });
      assert.equal(member.status, 200, member.text);
      assert.deepEqual(JSON.parse(member.text), { id, member: false, removed: true });
    } finally {
      proxy.close();
      squatter?.close();
    }
  });

  test("only the registration's own key withdraws it, and never a member's: refused, nothing changes", async () => {
    const post = (path: string, body: unknown, bearer = token) =>
      rawRequest({
        host: cluster.address(1),
        method: "POST",
        path,
        headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
        body: JSON.stringify(body),
        from: cluster.address(8),
      });
    // A registration whose node never starts: it stays joining.
    const joined = await post(
      "/v1/join",
      joinBody({ name: "ghost", advertise: cluster.address(7), mesh: "none" }),
    );
    assert.equal(joined.status, 200, joined.text);
    const answer = JSON.parse(joined.text) as { cluster: { id: string }; node: { id: number } };
    const ghost = answer.node.id;
    const withdrawal = (nodeId: number, as: ClusterIdentity) => ({
      nodeId,
      nodeCert: as.certPem,
      signature: signWithNodeKey(as.keyPem, withdrawalStatement(answer.cluster.id, nodeId)),
    });
    const names = async () => (await cluster.status(1)).nodes.map((node) => node.name).sort();
    assert.deepEqual(await names(), ["ghost", "node-1", "node-2"]);

    const forged = await post("/v1/join/withdraw", withdrawal(ghost, createNodeIdentity()));
    assert.equal(forged.status, 403, forged.text);
    const wrongToken = await post("/v1/join/withdraw", withdrawal(ghost, JOINER), "x".repeat(32));
    assert.equal(wrongToken.status, 401, wrongToken.text);
    // node-2 is ready: even its own key does not withdraw it (it leaves with mill leave).
    const { config, secrets } = await loadNode(cluster.dataDir(2));
    const member = await post(
      "/v1/join/withdraw",
      withdrawal(config.nodeId, { certPem: secrets.nodeCertPem, keyPem: secrets.nodeKeyPem }),
    );
    assert.equal(member.status, 409, member.text);
    assert.deepEqual(await names(), ["ghost", "node-1", "node-2"], "nothing changed");

    const own = await post("/v1/join/withdraw", withdrawal(ghost, JOINER));
    assert.equal(own.status, 200, own.text);
    assert.deepEqual(JSON.parse(own.text), { node: { id: ghost, name: "ghost" }, withdrawn: true });
    assert.deepEqual(await names(), ["node-1", "node-2"]);
  });

  test("init on a busy port fails the same way, leaving no data dir", async () => {
    const result = await cluster.run(
      [
        "init",
        "--advertise",
        cluster.address(2),
        "--mesh",
        "none",
        "--no-service",
        "--data-dir",
        cluster.dataDir(5),
      ],
      { timeoutMs: 10_000 },
    );
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stderr, new RegExp(`^error: ${cluster.address(2)}:4400 is already in use`));
    assert.equal(existsSync(cluster.dataDir(5)), false);
  });
});

/**
 * A proxy on `listen`:4400 in front of node 1 that holds the cluster's own TLS identity (the token
 * pins it): it passes every call on and answers it, except those `drop` picks (by path and how
 * many of that path came before), whose answer it drops once node 1 has given it, as a network
 * that fails at that moment would. `dropped` lists what node 1 answered to the dropped calls.
 */
async function answerLosingProxy(
  cluster: LocalCluster,
  listen: string,
  drop: (path: string, earlier: number) => boolean,
) {
  const tls = (file: string) => readFileSync(join(cluster.dataDir(1), file));
  const seen = new Map<string, number>();
  const dropped: { path: string; status: number | undefined }[] = [];
  const server = createHttpsServer({ key: tls("tls.key"), cert: tls("tls.crt") }, (req, res) => {
    const path = req.url ?? "";
    const earlier = seen.get(path) ?? 0;
    seen.set(path, earlier + 1);
    const body: Buffer[] = [];
    req.on("data", (chunk: Buffer) => body.push(chunk));
    req.on("end", () => {
      const upstream = httpsRequest(
        {
          host: cluster.address(1),
          port: 4400,
          method: req.method,
          path,
          headers: req.headers,
          rejectUnauthorized: false,
        },
        (answer) => {
          const reply: Buffer[] = [];
          answer.on("data", (chunk: Buffer) => reply.push(chunk));
          answer.on("end", () => {
            if (drop(path, earlier)) {
              dropped.push({ path, status: answer.statusCode });
              req.socket.destroy();
              return;
            }
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            res.end(Buffer.concat(reply));
          });
        },
      );
      upstream.on("error", () => req.socket.destroy());
      upstream.end(Buffer.concat(body));
    });
  });
  server.listen(4400, listen);
  await once(server, "listening");
  return { server, dropped };
}

describe("a join whose answers are lost", () => {
  const cluster = new LocalCluster();
  let token = "";
  before(async () => {
    token = await cluster.init();
  });
  after(() => cluster.cleanup());

  /** `mill join` as node N through the proxy on address 9. */
  const joinThroughProxy = (node: number) => cluster.join(node, token, 9);

  test("the first answer of the registration and of the request to become a voter are lost: each is asked again, one registration, joined", async () => {
    const proxy = await answerLosingProxy(
      cluster,
      cluster.address(9),
      (path, earlier) => (path === "/v1/join" || path === "/v1/join/confirm") && earlier === 0,
    );
    try {
      const result = await joinThroughProxy(2);
      assert.deepEqual(proxy.dropped, [
        { path: "/v1/join", status: 200 },
        { path: "/v1/join/confirm", status: 200 },
      ]);
      assert.equal(result.status, 0, result.stderr);
      const output = result.stdout + result.stderr;
      assert.match(output, /the registration got no answer \(.*\): trying it again in 250 ms/);
      assert.match(output, /the request to become a voter got no answer \(.*\): trying it again/);
      assert.match(output, /joined as node 2 \(voter\)/);
      const status = await cluster.status(1);
      assert.deepEqual(
        status.nodes.map((node) => [node.id, node.name, node.status]),
        [
          [1, "node-1", "ready"],
          [2, "node-2", "ready"],
        ],
        "the retried registration is the same one",
      );
    } finally {
      proxy.server.close();
    }
  });

  test("every answer to the request to become a voter is lost: the node keeps running as a voter, its data dir kept", async () => {
    const proxy = await answerLosingProxy(
      cluster,
      cluster.address(9),
      (path) => path === "/v1/join/confirm",
    );
    try {
      const result = await joinThroughProxy(3);
      assert.ok(proxy.dropped.length > 1, "the request was tried again");
      for (const answer of proxy.dropped) {
        assert.deepEqual(answer, { path: "/v1/join/confirm", status: 200 }, "node 3 is a voter");
      }
      assert.equal(result.status, 1, result.stderr);
      const errors = result.stderr.split("\n").filter((line) => line.startsWith("error: "));
      assert.equal(errors.length, 1, result.stderr);
      assert.match(errors[0] ?? "", /; node 3 is a voter, so it keeps running in the background/);
      assert.match(result.stdout + result.stderr, /did not withdraw node 3: node 3 \(node-3\) is/);
      assert.equal(existsSync(join(cluster.dataDir(3), "node.json")), true, "its data dir is kept");
      const status = await cluster.status(1);
      assert.deepEqual(
        status.nodes.map((node) => [node.name, node.status]),
        [
          ["node-1", "ready"],
          ["node-2", "ready"],
          ["node-3", "ready"],
        ],
      );
      // The member answers for itself: it runs, from the data dir the join kept.
      assert.equal((await cluster.status(3)).nodes.length, 3);
    } finally {
      proxy.server.close();
    }
  });
});
