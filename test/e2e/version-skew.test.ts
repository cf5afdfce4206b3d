/**
 * Versions side by side, with real executables on loopback (`--mesh none`). The file builds two
 * more executables from this source (build/executable.ts `variant`): B, whose protocol minor
 * version is one above this build's (A, dist/mill) and whose Mill version differs, and C, whose
 * protocol major version is one above. A cluster of A, B, A forms, takes writes and a workload
 * through every node and lists both Mill versions; a rolling restart of every node onto B marks
 * no node down and restarts no workload. C's join is refused with a line naming both versions,
 * and C started on a member's data dir is refused by its peers, each logging it a bounded number
 * of times (no redial loop), while the other two keep serving.
 * A second cluster has a node of a lower minor (D, one below A): D inits it, so it is a cluster
 * of the baseline protocol, and A, A join. While D is a member the cluster protocol stays 1.0,
 * `mill token rotate` is refused naming node-1, and every node keeps the same state digest; once
 * node-1 restarts on A the cluster protocol rises to A's and rotate works; then D is refused: its
 * join, and on a member's data dir its start, each with a line naming both versions; on a copy
 * of a member's data dir from before the raise, it learns the cluster's protocol from the peer
 * that refuses it and stops with the same line.
 * Every process started is killed at the end.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { buildExecutable } from "../../build/executable.ts";
import { hostArch } from "../../build/host-packages.ts";
import { PROTOCOL_VERSION, type ProtocolVersion } from "../../lib/shared/protocol.ts";
import { MILL_VERSION } from "../../lib/shared/version.ts";
import { eventually, exited, killWorkloads, LocalCluster, rollingRestart } from "./harness.ts";
import { debugState, secretOf } from "./raw-client.ts";

const scratch = mkdtempSync(join(tmpdir(), "mill-skew-"));
const text = (version: ProtocolVersion) => `${version.major}.${version.minor}`;
/** `text` as a regular expression that matches it as it is. */
const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const pattern = (line: string) => new RegExp(literal(line));

const A = { version: MILL_VERSION, protocol: PROTOCOL_VERSION };
const B = {
  version: `${MILL_VERSION}-skew.b`,
  protocol: { major: PROTOCOL_VERSION.major, minor: PROTOCOL_VERSION.minor + 1 },
  binary: join(scratch, "mill-b"),
};
const C = {
  version: `${MILL_VERSION}-skew.c`,
  protocol: { major: PROTOCOL_VERSION.major + 1, minor: 0 },
  binary: join(scratch, "mill-c"),
};
/** Built by the second describe, in its own folder (the first removes `scratch` when done). */
const D = {
  version: `${MILL_VERSION}-skew.d`,
  protocol: { major: PROTOCOL_VERSION.major, minor: PROTOCOL_VERSION.minor - 1 },
  binary: join(mkdtempSync(join(tmpdir(), "mill-skew-d-")), "mill-d"),
};

describe("versions side by side on loopback", () => {
  // As in the rolling restart of lifecycle.test.ts: a restart takes well under the timeout.
  const cluster = new LocalCluster("dist", {
    MILL_HEARTBEAT_INTERVAL_MS: "500",
    MILL_HEARTBEAT_TIMEOUT_MS: "6000",
    MILL_WATCHDOG_TICK_MS: "100",
  });
  let token = "";

  const mill = (node: number, args: string[]) => cluster.on(node, args);
  const log = (node: number) => readFileSync(join(cluster.dataDir(node), "mill.log"), "utf8");
  const versions = async (node: number) => {
    const listed = await mill(node, ["nodes", "--json"]);
    assert.equal(listed.status, 0, listed.stderr);
    const nodes = (JSON.parse(listed.stdout) as { nodes: { name: string; version: string }[] })
      .nodes;
    return nodes.map((entry) => [entry.name, entry.version]);
  };

  before(async () => {
    const host = hostArch();
    for (const build of [B, C]) {
      const { version, protocol } = build;
      await buildExecutable({
        target: host,
        host,
        out: build.binary,
        variant: { version, protocol },
      });
    }
    cluster.binaries.set(2, B.binary);
  });

  after(async () => {
    killWorkloads(cluster, [1, 2, 3]);
    await cluster.cleanup();
    rmSync(scratch, { recursive: true, force: true });
  });

  test("the builds differ in what they say: B another minor and Mill version, C another major", () => {
    for (const [binary, build] of [
      [cluster.binary, A],
      [B.binary, B],
      [C.binary, C],
    ] as const) {
      const printed = execFileSync(binary, ["--version"], { encoding: "utf8" });
      assert.match(printed, new RegExp(`^mill ${literal(build.version)}\n`));
      assert.match(printed, pattern(`\nprotocol ${text(build.protocol)} (`));
    }
  });

  test("A, B, A form a cluster, take writes and a workload through every node, and list both versions", async () => {
    token = await cluster.form(3);
    const web = await mill(2, ["run", "web", "--replicas", "3", "--", "sleep", "1000"]);
    assert.equal(web.status, 0, web.stderr);
    const side = await mill(3, ["run", "side", "--", "sleep", "1000"]);
    assert.equal(side.status, 0, side.stderr);
    const stopped = await mill(1, ["stop", "side"]);
    assert.equal(stopped.status, 0, stopped.stderr);
    for (const node of [1, 2, 3]) {
      const rows = await cluster.ps(node);
      assert.deepEqual(
        rows
          .filter((row) => row.status === "running")
          .map((row) => `${row.name} ${row.node}`)
          .sort(),
        ["web node-1", "web node-2", "web node-3"],
        `mill ps through node-${node}`,
      );
      assert.deepEqual(await versions(node), [
        ["node-1", A.version],
        ["node-2", B.version],
        ["node-3", A.version],
      ]);
    }
    // A new cluster speaks its init build's protocol from the start (bootstrap), and B's higher
    // minor does not raise it while A nodes are members.
    assert.equal((await cluster.status(2)).protocol, text(A.protocol));
    const table = await mill(1, ["nodes"]);
    assert.match(table.stdout, new RegExp(`node-2 +2 +ready +voter +${literal(B.version)} `));
    assert.match(table.stdout, new RegExp(`node-3 +3 +ready +voter +${literal(A.version)} `));
  });

  test("every node restarted onto B, one at a time: no NodeDown, no workload restarted elsewhere", async () => {
    const looks = await rollingRestart(cluster, [1, 3, 2], (node) =>
      cluster.binaries.set(node, B.binary),
    );
    assert.ok(looks > 3, `status looked at ${looks} times`);
    await eventually("every record naming B's version", async () => {
      const listed = await versions(1);
      return listed.every(([, version]) => version === B.version) ? true : undefined;
    });
    await eventually("the cluster protocol rising to B's", async () =>
      (await cluster.status(1)).protocol === text(B.protocol) ? true : undefined,
    );
  });

  test("a node of another major version is refused at join with one line naming both versions", async () => {
    assert.ok(token, "the cluster formed");
    cluster.binaries.set(4, C.binary);
    const joined = await cluster.join(4, token);
    assert.equal(joined.status, 1, joined.stdout);
    const both = `speaks protocol ${text(C.protocol)}, this cluster ${text(B.protocol)}`;
    assert.match(joined.stderr, pattern(`error: the joining node ${both}: `));
    assert.equal(joined.stderr.match(/^error: /gm)?.length, 1, joined.stderr);
    assert.match(
      log(1),
      pattern(
        `refused the join of node node-4: it speaks protocol ${text(C.protocol)}, this node ${text(B.protocol)}`,
      ),
    );
    assert.equal(existsSync(cluster.dataDir(4)), false, "the refused join left no data dir");
    assert.deepEqual(
      (await versions(2)).map(([name]) => name),
      ["node-1", "node-2", "node-3"],
    );
  });

  test("C on a member's data dir is refused by its peers a bounded number of times; the others keep serving", async (t) => {
    await exited("node-3", cluster.kill(3, "SIGTERM"));
    const before = [1, 2, 3].map((node) => log(node).length);
    const since = (node: number) => log(node).slice(before[node - 1]);
    const refusedBy = (node: number, theirs: ProtocolVersion, ours: ProtocolVersion) =>
      since(node)
        .split("\n")
        .filter((line) =>
          line.includes(`speaks protocol ${text(theirs)}, this node ${text(ours)}`),
        );
    cluster.binaries.set(3, C.binary);
    const started = Date.now();
    const agent = cluster.agent(3);

    // The peers notice, each with a line naming both versions; so does C.
    await eventually("both peers and C logging the other major version", async () =>
      refusedBy(1, C.protocol, B.protocol).length > 0 &&
      refusedBy(2, C.protocol, B.protocol).length > 0 &&
      refusedBy(3, B.protocol, C.protocol).length > 0
        ? true
        : undefined,
    );
    // The others carry on: node-3 goes down once its silence passes the timeout (6 s, several
    // of the transport's redial periods), and a write through each of the two still commits.
    await eventually(
      "node-3 down, node-1 and node-2 ready with a leader",
      async () => {
        const status = await cluster.statusIfAnswering(2);
        const shown = status?.nodes.map((entry) => `${entry.name} ${entry.status}`);
        return status?.leader &&
          JSON.stringify(shown) === JSON.stringify(["node-1 ready", "node-2 ready", "node-3 down"])
          ? true
          : undefined;
      },
      30_000,
    );
    for (const node of [1, 2]) {
      const write = await mill(node, ["run", `after-${node}`, "--", "sleep", "1000"]);
      assert.equal(write.status, 0, write.stderr);
    }
    assert.ok(Date.now() - started < 60_000, "observed within one incompatible back-off");
    // Each side dials the other at most once per back-off (60 s): one line for C's connection and
    // one for its own, where a redial loop would have logged one for every attempt.
    for (const node of [1, 2]) {
      const lines = refusedBy(node, C.protocol, B.protocol);
      assert.ok(lines.length <= 2, `node-${node} logged:\n${lines.join("\n")}`);
    }
    // C's own lines: its Raft transport's, at most one per peer and direction (4), and its
    // internal API's, at most one a minute per member (2): the old leader's followers may still
    // send it a heartbeat or two before they elect another.
    const own = refusedBy(3, B.protocol, C.protocol);
    const raftLines = own.filter((line) => line.includes("raft transport:"));
    const apiLines = own.filter((line) => line.includes("internal API:"));
    assert.equal(raftLines.length + apiLines.length, own.length, `C logged:\n${own.join("\n")}`);
    assert.ok(raftLines.length <= 4, `C logged:\n${own.join("\n")}`);
    assert.ok(apiLines.length <= 2, `C logged:\n${own.join("\n")}`);
    t.diagnostic(
      `lines naming both versions in ${Date.now() - started} ms: node-1 ${refusedBy(1, C.protocol, B.protocol).length}, node-2 ${refusedBy(2, C.protocol, B.protocol).length}, C ${own.length}`,
    );
    assert.doesNotThrow(() => process.kill(agent, 0), "C keeps running, refused, without exiting");
  });
});

describe("a node of a lower minor holds the cluster protocol back until it runs the newer build", () => {
  const cluster = new LocalCluster("dist", {
    MILL_HEARTBEAT_INTERVAL_MS: "500",
    MILL_HEARTBEAT_TIMEOUT_MS: "6000",
    MILL_WATCHDOG_TICK_MS: "100",
    // Every applied entry is in the node's snapshot, so a restarted node's own state has it all.
    MILL_SNAPSHOT_EVERY: "1",
  });
  let token = "";
  /** node-2's data dir as it was at the baseline, before the cluster raised its protocol. */
  const staleNode2 = join(dirname(D.binary), "node-2-at-baseline");
  const mill = (node: number, args: string[]) => cluster.on(node, args);
  const log = (node: number) => readFileSync(join(cluster.dataDir(node), "mill.log"), "utf8");
  const protocolOf = async (node: number) => (await cluster.status(node)).protocol;
  /** Every node's state digest, once all three have applied the same entries. */
  const sameDigests = () =>
    eventually("the three nodes at one applied index with one state digest", async () => {
      const states = await Promise.all(
        [1, 2, 3].map((node) =>
          debugState(cluster.address(node), secretOf(token), cluster.address(201)),
        ),
      );
      const applied = new Set(states.map((state) => state.applied));
      const digests = new Set(states.map((state) => state.stateSha256));
      return applied.size === 1 && digests.size === 1 ? states[0] : undefined;
    });

  before(async () => {
    const host = hostArch();
    await buildExecutable({ target: host, host, out: D.binary, variant: D });
    cluster.binaries.set(1, D.binary);
  });

  after(async () => {
    await cluster.cleanup();
    rmSync(dirname(D.binary), { recursive: true, force: true });
  });

  test("D inits and A, A join: the cluster speaks 1.0, rotate is refused naming node-1, one digest", async () => {
    token = await cluster.form(3);
    // node-1 leads: once it has heard a heartbeat from both others (a join's confirmation counts
    // as heard too, but carries no protocol), the refusal names only what holds it back.
    const since = Date.now();
    await eventually("node-1 hearing both others' heartbeats", async () => {
      const asked = Date.now();
      const status = await cluster.status(1);
      return status.leader === "node-1" &&
        status.nodes.every(
          (node) => node.lastHeartbeatMs !== null && node.lastHeartbeatMs < asked - since,
        )
        ? true
        : undefined;
    });
    const digest = await sameDigests();
    const rotate = await mill(2, ["token", "rotate"]);
    assert.equal(rotate.status, 1, rotate.stdout);
    const needed = text(PROTOCOL_VERSION);
    assert.equal(
      rotate.stderr,
      `error: mill token rotate needs protocol ${needed} on every node, and node-1 speaks ${text(D.protocol)}: run a mill of protocol ${needed} or later there (or mill remove the node), then try again (HTTP 409)\n`,
    );
    for (const node of [1, 2, 3]) assert.equal(await protocolOf(node), "1.0");
    const again = await sameDigests();
    // A quiet cluster: the refused rotation committed nothing, so nothing was applied since.
    assert.deepEqual(again, digest, "the refused rotation changed nothing");

    // A copy of node-2's data dir from before any raise, for the last test.
    await exited("node-2", cluster.kill(2, "SIGTERM"));
    cpSync(cluster.dataDir(2), staleNode2, { recursive: true });
    cluster.agent(2);
    await eventually("node-2 back, ready", async () => {
      const status = await cluster.statusIfAnswering(2);
      return status?.leader && status.nodes.every((node) => node.status === "ready")
        ? true
        : undefined;
    });
  });

  test("node-1 restarted on A: the cluster protocol rises to A's, rotate works, one digest", async () => {
    assert.ok(token, "the cluster formed");
    await exited("node-1", cluster.kill(1, "SIGTERM"));
    cluster.binaries.delete(1);
    cluster.agent(1);
    await eventually(
      "every node showing the cluster protocol of A",
      async () => {
        const shown = await Promise.all([1, 2, 3].map((node) => cluster.statusIfAnswering(node)));
        return shown.every((status) => status?.protocol === text(PROTOCOL_VERSION))
          ? true
          : undefined;
      },
      30_000,
    );
    const rotate = await mill(2, ["token", "rotate"]);
    assert.equal(rotate.status, 0, rotate.stderr);
    token = /mill_t_\S+/.exec(rotate.stdout)?.[0] ?? "";
    assert.ok(token, rotate.stdout);
    await sameDigests();
  });

  test("then D is refused: its join, and its start on a member's data dir, each naming both versions", async () => {
    assert.ok(token, "rotated");
    const ours = text(PROTOCOL_VERSION);
    const theirs = text(D.protocol);
    cluster.binaries.set(4, D.binary);
    const joined = await cluster.join(4, token);
    assert.equal(joined.status, 1, joined.stdout);
    assert.equal(
      joined.stderr,
      `error: the joining node speaks protocol ${theirs}, below this cluster's protocol ${ours}: join with a mill of protocol ${ours} or later (HTTP 409)\n`,
    );
    assert.equal(existsSync(cluster.dataDir(4)), false, "the refused join left no data dir");
    assert.ok(
      [1, 2, 3].some((node) =>
        log(node).includes(
          `refused the join of node node-4: it speaks protocol ${theirs}, this node ${ours}, and the cluster's protocol is ${ours}`,
        ),
      ),
    );

    await exited("node-3", cluster.kill(3, "SIGTERM"));
    cluster.binaries.set(3, D.binary);
    const before = log(3).length;
    await exited("D on node-3's data dir", cluster.agent(3));
    const lines = log(3)
      .slice(before)
      .split("\n")
      .filter((line) =>
        line.includes(`this node speaks protocol ${theirs}, below the cluster's protocol ${ours}`),
      );
    assert.ok(lines.length >= 1 && lines.length <= 2, lines.join("\n"));
    assert.match(
      lines.at(-1)!,
      new RegExp(`run a mill of protocol ${literal(ours)} or later on this data dir`),
    );
    const status = await cluster.status(1);
    assert.equal(status.protocol, ours, "the cluster protocol never goes back");
  });

  test("D on a data dir whose state predates the raise learns it from the peer that refuses it, and stops", async () => {
    const ours = text(PROTOCOL_VERSION);
    const theirs = text(D.protocol);
    await exited("node-2", cluster.kill(2, "SIGTERM"));
    rmSync(cluster.dataDir(2), { recursive: true, force: true });
    cpSync(staleNode2, cluster.dataDir(2), { recursive: true });
    cluster.binaries.set(2, D.binary);
    const before = log(1).length;
    const started = Date.now();
    await exited("D on node-2's stale data dir", cluster.agent(2));
    const own = log(2).split("\n");
    assert.ok(
      own.some((line) =>
        new RegExp(
          `raft transport: node 1 at \\S+ refused this node: the cluster's protocol is ${literal(ours)}, this node ${literal(theirs)}: not sending to it for 60 s`,
        ).test(line),
      ),
      own.slice(-20).join("\n"),
    );
    assert.ok(
      own.some((line) =>
        line.includes(
          `this node speaks protocol ${theirs}, below the cluster's protocol ${ours}: run a mill of protocol ${ours} or later on this data dir`,
        ),
      ),
      own.slice(-20).join("\n"),
    );
    const refusing = log(1)
      .slice(before)
      .split("\n")
      .filter((line) =>
        line.includes(
          `: it speaks protocol ${theirs}, this node ${ours}, and the cluster's protocol is ${ours}: refusing it`,
        ),
      );
    assert.equal(refusing.length, 1, refusing.join("\n"));
    assert.ok(Date.now() - started < 60_000, "it stopped within one back-off: no redial loop");
  });
});
