/**
 * Security of a running cluster, attacked through the real executable on loopback (`--mesh none`):
 * token rotation, back-off of failed authentication per source, TLS pinning against another
 * cluster, join replays, secret file permissions, and secrets kept out of logs, CLI output and
 * process command lines.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createNodeIdentity } from "../../lib/identity/node-key.ts";
import { createSecret, hashSecret } from "../../lib/identity/token.ts";
import { generateKeyPair } from "../../lib/mesh/keys.ts";
import { signJoin } from "../unit/cluster/fixtures.ts";
import { eventually, LocalCluster, type MillResult } from "./harness.ts";
import { debugState, rawRequest, secretOf } from "./raw-client.ts";

const SECRET_FILES = ["token", "member.secret", "tls.key", "wg.key", "node.json"];

describe("security of a running cluster", () => {
  const cluster = new LocalCluster();
  const other = new LocalCluster();
  /** Output of every command that is not meant to print a token (init and rotate are). */
  const quietOutputs: MillResult[] = [];
  const tokens: string[] = [];
  let token = "";
  let otherToken = "";

  async function run(args: string[], env: Record<string, string> = {}) {
    const result = await cluster.run(args, { env });
    quietOutputs.push(result);
    return result;
  }
  const onNode = (node: number) => ({ MILL_DATA_DIR: cluster.dataDir(node) });
  const address = (node: number) => `${cluster.address(node)}:4400`;

  before(async () => {
    token = await cluster.init();
    tokens.push(token);
    for (const node of [2, 3]) {
      const joined = await cluster.join(node, token);
      quietOutputs.push(joined);
      assert.equal(joined.status, 0, joined.stderr);
    }
    otherToken = await other.init();
  });
  after(async () => {
    await cluster.cleanup();
    await other.cleanup();
  });

  test("mill token rotate: the old token stops working, every node serves and saves the new one", async () => {
    const rotated = await cluster.run(["token", "rotate"], { env: onNode(2) });
    assert.equal(rotated.status, 0, rotated.stderr);
    const fresh = /Token: (mill_t_\S+)/.exec(rotated.stdout)?.[1];
    assert.ok(fresh, rotated.stdout);
    assert.notEqual(fresh, token);
    tokens.push(fresh);
    for (const node of [1, 2, 3]) {
      // The new token pins a new identity, which each node serves once it has fetched it.
      const now = await eventually(`node ${node} to serve the new identity`, async () => {
        const status = await run(["status", "--address", address(node), "--token", fresh]);
        if (status.status === 0) return status;
        assert.match(status.stderr, /is not the cluster the token names/);
        return undefined;
      });
      assert.match(now.stdout, /^CLUSTER: 3 nodes, all healthy/);
      // The old token now pins an identity no node serves: refused before its secret is sent.
      const old = await run(["status", "--address", address(node), "--token", token]);
      assert.equal(old.status, 1, `old token on node ${node}`);
      assert.match(old.stderr, /is not the cluster the token names/);
      const oldSecret = await rawRequest({
        host: cluster.address(node),
        path: "/v1/status",
        headers: { authorization: `Bearer ${secretOf(token)}` },
        from: cluster.address(203),
      });
      assert.equal(oldSecret.status, 401, `old secret on node ${node}`);
    }
    const lateJoin = await cluster.join(4, token);
    quietOutputs.push(lateJoin);
    assert.equal(lateJoin.status, 1, "a join with the old token is refused");
    for (const node of [1, 2, 3]) {
      await eventually(`node ${node} saved the new token`, async () => {
        const saved = readFileSync(join(cluster.dataDir(node), "token"), "utf8").trim();
        assert.ok(
          saved === token || saved === fresh,
          `node ${node}'s token file holds the old or the new token`,
        );
        return saved === fresh ? true : undefined;
      });
      const local = await run(["status"], onNode(node));
      assert.equal(local.status, 0, `local status on node ${node}: ${local.stderr}`);
    }
    token = fresh;
  });

  test("failed authentication from one source is backed off with 429; other sources are not", async () => {
    const attacker = cluster.address(200);
    const statuses: number[] = [];
    let last = { status: 0, headers: {} as Record<string, unknown>, text: "" };
    for (let i = 0; i < 7; i++) {
      last = await rawRequest({
        host: cluster.address(1),
        path: "/v1/status",
        headers: { authorization: "Bearer guessed-secret-0123456789" },
        from: attacker,
      });
      statuses.push(last.status);
    }
    assert.deepEqual(statuses, [401, 401, 401, 401, 401, 401, 429]);
    assert.equal(last.headers["retry-after"], "1");
    assert.match(last.text, /too many failed authentications/);
    const bystander = await rawRequest({
      host: cluster.address(1),
      path: "/v1/status",
      headers: { authorization: `Bearer ${secretOf(token)}` },
      from: cluster.address(201),
    });
    assert.equal(bystander.status, 200, "another address is served at once");
    const log = readFileSync(join(cluster.dataDir(1), "mill.log"), "utf8");
    const lines = log.split("\n").filter((line) => line.includes(`from ${attacker}`));
    assert.equal(lines.length, 1, "logged once per window");
    assert.match(lines[0]!, /6 failed authentications from .* refusing its failures for 1 s/);
    assert.doesNotMatch(log, /guessed-secret/);
  });

  test("a wrong-token flood from 127.0.0.1 locks out neither valid clients nor the nodes there", async () => {
    const secret = secretOf(tokens.at(-1)!);
    const status = await run(["status", "--json", "--token", tokens.at(-1)!], onNode(1));
    assert.equal(status.status, 0, status.stderr);
    const leaderName = (JSON.parse(status.stdout) as { leader: string }).leader;
    const leader = Number(leaderName.replace("node-", ""));
    const logPath = join(cluster.dataDir(leader), "mill.log");
    const logBefore = readFileSync(logPath, "utf8").length;
    const host = cluster.address(leader);
    // Nodes on loopback reach each other from 127.0.0.1, as every unbound local client does.
    const from = "127.0.0.1";
    const floodStatuses = new Map<number, number>();
    const validStatuses: number[] = [];
    // Twice the heartbeat timeout (FAST_HEALTH): long enough for the leader to mark followers
    // down if their heartbeats from 127.0.0.1 were refused.
    const until = Date.now() + 3_000;
    // The valid client asks each time the flood has just been answered 429, when its source is
    // blocked for certain: what it meets is counted by the flood's answers, not paced by a timer.
    // The attack lasts the whole window and until the client has asked five times.
    let rounds = 0;
    while (Date.now() < until || (validStatuses.length < 5 && rounds < 1_000)) {
      rounds++;
      const reply = await rawRequest({
        host,
        path: "/v1/status",
        headers: { authorization: "Bearer guessed-secret-0123456789" },
        from,
      });
      floodStatuses.set(reply.status, (floodStatuses.get(reply.status) ?? 0) + 1);
      if (reply.status !== 429) continue;
      const valid = await rawRequest({
        host,
        path: "/v1/status",
        headers: { authorization: `Bearer ${secret}` },
        from,
      });
      validStatuses.push(valid.status);
    }
    assert.ok((floodStatuses.get(429) ?? 0) > 0, `the flood was slowed: ${[...floodStatuses]}`);
    assert.deepEqual([...floodStatuses.keys()].sort(), [401, 429]);
    assert.ok(validStatuses.length >= 5, `${validStatuses.length} valid requests while blocked`);
    assert.deepEqual(new Set(validStatuses), new Set([200]), "the valid client was always served");
    const during = readFileSync(logPath, "utf8").slice(logBefore);
    assert.doesNotMatch(during, /is down/, "no follower was marked down");
    assert.match(during, /failed authentications from 127\.0\.0\.1/);
    const after = await run(["status", "--token", tokens.at(-1)!], onNode(leader));
    assert.equal(after.status, 0, after.stderr);
    assert.match(after.stdout, /^CLUSTER: 3 nodes, all healthy/);
  });

  test("the token as init prints it is a bearer token; one naming another cluster is refused", async () => {
    const current = tokens.at(-1)!;
    const from = cluster.address(202);
    for (const node of [1, 2, 3]) {
      const whole = await rawRequest({
        host: cluster.address(node),
        path: "/v1/status",
        headers: { authorization: `Bearer ${current}` },
        from,
      });
      assert.equal(whole.status, 200, `node ${node}: ${whole.text}`);
    }
    const foreign = `mill_t_${secretOf(current)}.${otherToken.split(".")[1]}`;
    const refused = await rawRequest({
      host: cluster.address(1),
      path: "/v1/status",
      headers: { authorization: `Bearer ${foreign}` },
      from,
    });
    assert.equal(refused.status, 401);
    assert.match(refused.text, /this token is for another cluster/);
  });

  test("a token for another cluster is refused before its secret is sent (possible man-in-the-middle)", async () => {
    const target = `${other.address(1)}:4400`;
    for (let i = 0; i < 7; i++) {
      const status = await run(["status", "--address", target, "--token", token]);
      assert.equal(status.status, 1);
      assert.match(status.stderr, /possible man-in-the-middle/);
    }
    const joined = await run([
      "join",
      "--no-service",
      target,
      "--token",
      token,
      "--advertise",
      cluster.address(5),
      "--name",
      "node-5",
      "--data-dir",
      cluster.dataDir(5),
      "--mesh",
      "none",
    ]);
    assert.equal(joined.status, 1);
    assert.match(joined.stderr, /possible man-in-the-middle/);
    // Seven wrong secrets from this source would have put it in back-off had any arrived.
    const own = await other.run(["status", "--address", target, "--token", otherToken]);
    assert.equal(own.status, 0, own.stderr);
    assert.match(own.stdout, /^CLUSTER: 1 node, all healthy/);
    const log = readFileSync(join(other.dataDir(1), "mill.log"), "utf8");
    assert.doesNotMatch(log, /failed authentication/);
  });

  test("a replayed join cannot register another key or address; state is unchanged", async () => {
    const secret = secretOf(token);
    const from = cluster.address(210);
    const joiner = createNodeIdentity();
    const body = {
      requestId: randomBytes(12).toString("base64url"),
      name: "node-9",
      advertise: cluster.address(9),
      apiPort: 4400,
      raftPort: 4401,
      wgPort: 4400,
      wgPublicKey: generateKeyPair().publicKey,
      resources: { cores: 1, memoryBytes: 1024 ** 3 },
      memberSecretHash: hashSecret(createSecret()),
      mesh: "none",
    };
    // Each body signed by the joiner's key, as a retrying joiner would send it.
    const post = (payload: Record<string, unknown>) =>
      rawRequest({
        host: cluster.address(1),
        method: "POST",
        path: "/v1/join",
        headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
        body: JSON.stringify(signJoin(payload, joiner)),
        from,
      });
    const first = await post(body);
    assert.equal(first.status, 200, first.text);
    const id = (JSON.parse(first.text) as { node: { id: number } }).node.id;
    const before = await debugState(cluster.address(1), secret, from);
    const verbatim = await post(body);
    assert.equal(verbatim.status, 200);
    assert.equal((JSON.parse(verbatim.text) as { node: { id: number } }).node.id, id);
    for (const change of [
      { advertise: cluster.address(66) },
      { wgPublicKey: generateKeyPair().publicKey },
      { name: "node-66", wgPublicKey: generateKeyPair().publicKey },
    ]) {
      const replay = await post({ ...body, ...change });
      assert.equal(replay.status, 409, replay.text);
      assert.equal((JSON.parse(replay.text) as { field: string }).field, "requestId");
    }
    assert.deepEqual(await debugState(cluster.address(1), secret, from), before);
  });

  test("secret files are 0600 in a 0700 data dir; loose permissions stop the node with the fix", async () => {
    for (const node of [1, 2, 3]) {
      const dir = cluster.dataDir(node);
      assert.equal(statSync(dir).mode & 0o777, 0o700, dir);
      for (const file of SECRET_FILES) {
        assert.equal(statSync(join(dir, file)).mode & 0o777, 0o600, `${dir}/${file}`);
      }
      assert.equal(existsSync(join(dir, "token.next")), false, "no staged token left behind");
    }
    cluster.kill(3);
    const tokenFile = join(cluster.dataDir(3), "token");
    chmodSync(tokenFile, 0o644);
    const refused = await run(["agent", "--data-dir", cluster.dataDir(3)]);
    assert.equal(refused.status, 1);
    assert.match(
      refused.stderr,
      new RegExp(`${tokenFile} is accessible to group or others \\(mode 0644\\); run: chmod 600 `),
    );
    chmodSync(tokenFile, 0o600);
    chmodSync(cluster.dataDir(3), 0o755);
    const looseDir = await run(["agent", "--data-dir", cluster.dataDir(3)]);
    assert.equal(looseDir.status, 1);
    assert.match(looseDir.stderr, /accessible to group or others \(mode 0755\); run: chmod 700 /);
    chmodSync(cluster.dataDir(3), 0o700);
    cluster.agent(3);
    await eventually("node 3 back", async () => {
      const status = await cluster.statusIfAnswering(3);
      return status?.nodes.find((node) => node.name === "node-3")?.status === "ready"
        ? true
        : undefined;
    });
  });

  test("no secret appears in any log, quiet command output or node command line", () => {
    const secrets = tokens.map(secretOf);
    for (const node of [1, 2, 3]) {
      for (const file of ["member.secret", "wg.key"]) {
        secrets.push(readFileSync(join(cluster.dataDir(node), file), "utf8").trim());
      }
    }
    secrets.push(secretOf(otherToken));
    const places: [string, string][] = [];
    for (const [owner, node] of [
      [cluster, 1],
      [cluster, 2],
      [cluster, 3],
      [other, 1],
    ] as const) {
      places.push([
        `mill.log of ${owner.dataDir(node)}`,
        readFileSync(join(owner.dataDir(node), "mill.log"), "utf8"),
      ]);
      const pid = owner.pid(node);
      if (pid) places.push([`cmdline of pid ${pid}`, readFileSync(`/proc/${pid}/cmdline`, "utf8")]);
    }
    quietOutputs.forEach((result, index) => {
      places.push([`command output ${index}`, result.stdout + result.stderr]);
    });
    assert.ok(places.length > 20);
    for (const [where, text] of places) {
      for (const secret of secrets) {
        assert.equal(text.includes(secret), false, `a secret leaked into ${where}`);
      }
    }
  });
});
