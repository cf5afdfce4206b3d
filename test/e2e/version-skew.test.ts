/**
 * Versions side by side, with real executables on loopback (`--mesh none`). The file builds two
 * more executables from this source (build/executable.ts `variant`): B, whose protocol minor
 * version is one above this build's (A, dist/mill) and whose Mill version differs, and C, whose
 * protocol major version is one above. A cluster of A, B, A forms, takes writes and a workload
 * through every node and lists both Mill versions; a rolling restart of every node onto B marks
 * no node down and restarts no workload. C's join is refused with a line naming both versions,
 * and C started on a member's data dir is refused by its peers, each logging it a bounded number
 * of times (no redial loop), while the other two keep serving.
 * Every process started is killed at the end.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { buildExecutable } from "../../build/executable.ts";
import { hostArch } from "../../build/host-packages.ts";
import { PROTOCOL_VERSION, type ProtocolVersion } from "../../lib/shared/protocol.ts";
import { MILL_VERSION } from "../../lib/shared/version.ts";
import { eventually, exited, killWorkloads, LocalCluster, rollingRestart } from "./harness.ts";

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
    const own = refusedBy(3, B.protocol, C.protocol);
    assert.ok(own.length <= 4, `C logged:\n${own.join("\n")}`);
    t.diagnostic(
      `lines naming both versions in ${Date.now() - started} ms: node-1 ${refusedBy(1, C.protocol, B.protocol).length}, node-2 ${refusedBy(2, C.protocol, B.protocol).length}, C ${own.length}`,
    );
    assert.doesNotThrow(() => process.kill(agent, 0), "C keeps running, refused, without exiting");
  });
});
