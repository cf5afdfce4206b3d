/**
 * The attacker suite of issue 11 in network namespaces with the WireGuard mesh: three nodes
 * (`--mesh wireguard`, the default) and a fourth namespace on the same bridge, a neighbour that
 * never joins. Replayed here: forged snapshot, vote and append frames with a high term from a
 * neighbour that routes the mesh range to a node, and from a local unprivileged user (`nobody`)
 * on a node who connects to its own mesh address; that user against the internal API; 64 MiB
 * frame headers; idle connections past the caps; wrong-token and wrong-secret floods from the
 * addresses nodes use; the Raft and internal ports on the underlay; and, on a cluster of its own,
 * `nobody` on a follower holding every slot of its address on the leader while the follower's
 * agent restarts (it dials from a reserved source port). After each attack, every
 * one of these holds: no node's term changed, every node has the same state digest, every node
 * is still ready, no node's memory grew by more than MEMORY_SLACK_MIB, and the attacked node
 * logged the refusal naming the attacker's address.
 * The loopback suite (test/e2e/attacks.test.ts) shares its frames (test/e2e/raft-attacks.ts).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, test as nodeTest } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import type { ClusterIdentity } from "../../../lib/identity/x509.ts";
import { DEFAULT_MESH_CIDR } from "../../../lib/mesh/plan.ts";
import { eventually } from "../../e2e/harness.ts";
import { RAFT_PORT } from "../../e2e/raft-attacks.ts";
import { FaultCluster } from "../faults/cluster.ts";
import type { Host } from "../harness.ts";
import { notRootReason } from "../harness.ts";
import { Agent } from "../mesh/agent-client.ts";

const ATTACKER = fileURLToPath(new URL("./attacker.ts", import.meta.url));
const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const API_PORT = 4400;
const MEMORY_SLACK_MIB = 64;
const RESTART_TEST =
  "a local user on a follower holding its slots on the leader does not keep the follower's restarted agent out";
const NODES = ["node-1", "node-2", "node-3"];
/** Runs a command as `nobody`: a local user of the node with no rights to its data dir. */
const AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"];

/**
 * One cluster and the attacks made on it. Most run with FAST_HEALTH; the restart of an agent needs
 * a cluster of its own whose heartbeat timeout is longer than a restart, which FAST_HEALTH's
 * 1.5 s is not (and the wrong-token flood, which lasts three heartbeat timeouts, would grow the
 * leader's memory past MEMORY_SLACK_MIB with a longer one: 123 MiB at 5 s).
 */
interface Run {
  readonly env: Record<string, string>;
  readonly restart: boolean;
}

/** Registers the tests of `run` (its `before` forms the cluster). */
function attackSuite(run: Run): void {
  /** node:test's test, for the tests of this run only (the restart test has a run of its own). */
  const test = ((name: string, ...rest: unknown[]) =>
    (name === RESTART_TEST) === run.restart
      ? (nodeTest as (...args: unknown[]) => unknown)(name, ...rest)
      : undefined) as typeof nodeTest;
  let cluster: FaultCluster;
  let leader = "";
  let follower = "";
  let third = "";
  const mesh = new Map<string, string>();
  const ids = new Map<string, number>();
  const terms = new Map<string, number>();
  const rssBefore = new Map<string, number>();
  const attackers: Agent[] = [];
  /** The namespace on the bridge that never joins. */
  const neighbour = (): Host => cluster.net.hosts[3]!;

  const rssMib = (name: string) => {
    const status = readFileSync(`/proc/${cluster.pid(name)}/status`, "utf8");
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) / 1024;
  };
  const nodeKey = (name: string): ClusterIdentity => ({
    certPem: readFileSync(join(cluster.dataDir(name), "node.crt"), "utf8"),
    keyPem: readFileSync(join(cluster.dataDir(name), "node.key"), "utf8"),
  });
  const escaped = (text: string) => text.replace(/\./g, "\\.");

  /** An attacker process in `host`'s namespace, as nobody unless `asRoot`. */
  async function attackerIn(host: Host, asRoot = false): Promise<Agent> {
    const command = [...(asRoot ? [] : AS_NOBODY), process.execPath, "--import", "tsx", ATTACKER];
    const child = host.spawn(command[0]!, command.slice(1), {
      cwd: REPO,
      stdio: ["pipe", "pipe", "inherit"],
    });
    const agent = new Agent(child);
    attackers.push(agent);
    const { uid } = await agent.request({ op: "whoami" });
    assert.equal(uid, asRoot ? 0 : 65534, "the attacker runs as the user meant");
    return agent;
  }

  /** Waits for `name`'s log to show a line matching `line` since `since` (cluster clock). */
  const logged = (name: string, line: RegExp, since: number) =>
    eventually(`${name} to log ${line}`, async () => cluster.firstLine(name, line, since));

  /** Everything each test asserts after its attack, begun at `since` (cluster clock). */
  async function assertUnharmed(since: number): Promise<void> {
    for (const name of NODES) {
      const down = cluster.firstLine(name, /node \S+ is down/, since);
      assert.equal(down, undefined, `no node was marked down, even for a while (${name})`);
    }
    const digests = new Set<string>();
    for (const name of NODES) {
      const status = await cluster.status(name);
      assert.equal(status.term, terms.get(name), `${name}'s term`);
      for (const node of status.nodes)
        assert.equal(node.status, "ready", `${node.name} on ${name}`);
      digests.add((await cluster.debugState(name)).stateSha256);
      const grew = rssMib(name) - rssBefore.get(name)!;
      assert.ok(grew < MEMORY_SLACK_MIB, `${name} grew by ${grew.toFixed(1)} MiB`);
    }
    assert.equal(digests.size, 1, "every node has the same state");
  }

  before(async () => {
    cluster = await FaultCluster.create(4, run.env);
    await cluster.form(NODES);
    const view = await cluster.view("node-1");
    for (const node of view.nodes.nodes) {
      assert.ok(node.meshAddress, `${node.name} has a mesh address`);
      mesh.set(node.name, node.meshAddress);
      ids.set(node.name, node.id);
    }
    leader = view.nodes.leader!;
    [follower, third] = NODES.filter((name) => name !== leader) as [string, string];
    // Let the joins' commits apply everywhere before taking the baseline.
    await eventually("equal digests", async () => {
      const digests = new Set<string>();
      for (const name of NODES) digests.add((await cluster.debugState(name)).stateSha256);
      return digests.size === 1 ? true : undefined;
    });
    for (const name of NODES) {
      terms.set(name, (await cluster.status(name)).term);
      rssBefore.set(name, rssMib(name));
    }
  });

  after(async () => {
    for (const agent of attackers) agent.child.kill("SIGKILL");
    await cluster?.cleanup(false);
  });

  test("a neighbour that routes the mesh range to a node is refused before TLS, on Raft and the internal API", async () => {
    const since = cluster.now();
    await neighbour().run("ip", [
      "route",
      "add",
      DEFAULT_MESH_CIDR,
      "via",
      cluster.host(follower).underlay,
    ]);
    const attacker = await attackerIn(neighbour(), true);
    const target = mesh.get(follower)!;
    const sent = await attacker.request({
      op: "frames",
      host: target,
      from: ids.get(leader),
      to: ids.get(follower),
    });
    assert.equal(sent.local, neighbour().underlay, "the frames left from the neighbour's address");
    const internal = await attacker.request({
      op: "https",
      host: target,
      port: API_PORT,
      path: "/v1/internal/peers",
      count: 1,
    });
    assert.match(String((internal.statuses as string[])[0]), /^error /, "no TLS, no answer");
    const outside = `refusing a connection from ${escaped(neighbour().underlay)}: it did not come through the mesh`;
    await logged(follower, new RegExp(`raft transport: ${outside}`), since);
    await logged(follower, new RegExp(`internal API: ${outside}`), since);
    await assertUnharmed(since);
  });

  test("Raft and the internal API do not listen on the underlay", async () => {
    const since = cluster.now();
    const attacker = await attackerIn(neighbour(), true);
    const underlay = cluster.host(follower).underlay;
    const raft = await attacker.request({
      op: "https",
      host: underlay,
      port: RAFT_PORT,
      path: "/",
      count: 1,
    });
    assert.deepEqual(raft.statuses, ["error ECONNREFUSED"]);
    // The public port answers there, but not with the internal routes.
    const internal = await attacker.request({
      op: "https",
      host: underlay,
      port: API_PORT,
      path: "/v1/internal/peers",
      count: 1,
    });
    assert.deepEqual(internal.statuses, ["404"]);
    await assertUnharmed(since);
  });

  test("a local user on a node cannot read its keys, and its forged frames on the mesh address never reach Raft", async () => {
    const since = cluster.now();
    const attacker = await attackerIn(cluster.host(follower));
    const read = await cluster
      .host(follower)
      .exec(AS_NOBODY[0]!, [
        ...AS_NOBODY.slice(1),
        "cat",
        join(cluster.dataDir(follower), "node.key"),
      ]);
    assert.notEqual(read.code, 0, "nobody cannot read the node key");
    assert.match(read.stderr, /Permission denied/);
    const own = mesh.get(follower)!;
    for (const as of [undefined, "stranger"]) {
      await attacker.request({
        op: "frames",
        host: own,
        from: ids.get(leader),
        to: ids.get(follower),
        ...(as ? { as } : {}),
      });
    }
    await logged(
      follower,
      new RegExp(`refusing a connection from ${escaped(own)}: TLS handshake failed`),
      since,
    );
    await logged(
      follower,
      new RegExp(
        `refusing a connection from ${escaped(own)}:\\d+: its certificate is not the key of a current member`,
      ),
      since,
    );
    await assertUnharmed(since);
  });

  test("a local user on a node gets nothing from the internal API on its mesh address", async () => {
    const since = cluster.now();
    const attacker = await attackerIn(cluster.host(follower));
    const own = mesh.get(follower)!;
    const answered = await attacker.request({
      op: "https",
      host: own,
      port: API_PORT,
      method: "POST",
      path: "/v1/internal/heartbeat",
      headers: { "x-mill-node": String(ids.get(follower)), authorization: "Bearer guessed" },
      count: 7,
    });
    // Refused every time; past five free failures the source's failures are held back.
    const statuses = answered.statuses as string[];
    assert.deepEqual(statuses.slice(0, 6), ["401", "401", "401", "401", "401", "401"]);
    assert.ok(["401", "429"].includes(statuses[6]!), statuses.join(" "));
    await logged(follower, new RegExp(`failed authentications from ${escaped(own)}`), since);
    await assertUnharmed(since);
  });

  test("64 MiB frame headers allocate nothing, from a local user or over a member's key", async () => {
    const since = cluster.now();
    const own = mesh.get(follower)!;
    const local = await attackerIn(cluster.host(follower));
    await local.request({ op: "hold", host: own, count: 12, header: true });
    // Even the leader's own key may send a large frame only by sending its bytes.
    const member = await attackerIn(cluster.host(follower), true);
    await member.request({ op: "hold", host: own, count: 12, header: true, as: nodeKey(leader) });
    await member.request({ op: "hold", host: own, count: 1, header: true, as: nodeKey(third) });
    await logged(
      follower,
      new RegExp(
        `closing the connection from node ${ids.get(third)} \\(${escaped(own)}:\\d+\\): frame of 67108864 bytes exceeds the limit of 4194304`,
      ),
      since,
    );
    await assertUnharmed(since);
    await local.request({ op: "release" });
    await member.request({ op: "release" });
  });

  test("idle connections from a local user: all but 16 are closed at once, the rest at the handshake timeout", {
    timeout: 60_000,
  }, async () => {
    const since = cluster.now();
    // On the third node, so that this source's refusals are logged afresh (one line a minute).
    const own = mesh.get(third)!;
    const attacker = await attackerIn(cluster.host(third));
    const opened = await attacker.request({ op: "hold", host: own, count: 200 });
    assert.equal(opened.opened, 200);
    await attacker.request({ op: "accepted", host: own, port: RAFT_PORT });
    // The node admits or refuses each connection in the callback that accepts it, on its one
    // thread: its answer to a later request proves that every one of those callbacks has run.
    await cluster.debugState(third);
    const held = await attacker.request({ op: "held", host: own, port: RAFT_PORT });
    assert.ok(
      (held.established as number) <= 16,
      `${third} holds ${held.established} of our 200 connections`,
    );
    await attacker.request({ op: "settled" });
    await logged(
      third,
      new RegExp(
        `refusing a connection from ${escaped(own)}: ${escaped(own)} already has 16 connections that have not authenticated`,
      ),
      since,
    );
    await assertUnharmed(since);
  });

  test("wrong-token and wrong-secret floods from the addresses a node uses lock nobody out", {
    timeout: 60_000,
  }, async () => {
    const since = cluster.now();
    // A local user on the follower: the follower's internal calls to the leader leave from its
    // mesh address, and its clients' calls from its underlay address; the floods share both, for
    // longer than the silence after which the leader would mark the follower down.
    const attacker = await attackerIn(cluster.host(follower));
    const floodMs = 3 * Number(cluster.env.MILL_HEARTBEAT_TIMEOUT_MS);
    const floods = [
      attacker.request({
        op: "https",
        host: mesh.get(leader),
        port: API_PORT,
        method: "POST",
        path: "/v1/internal/heartbeat",
        headers: { "x-mill-node": String(ids.get(follower)), authorization: "Bearer wrong" },
        forMs: floodMs,
      }),
      attacker.request({
        op: "https",
        host: cluster.host(leader).underlay,
        port: API_PORT,
        path: "/v1/status",
        headers: { authorization: "Bearer wrong" },
        forMs: floodMs,
      }),
    ];
    await logged(
      leader,
      new RegExp(`failed authentications from ${escaped(mesh.get(follower)!)}`),
      since,
    );
    await logged(
      leader,
      new RegExp(`failed authentications from ${escaped(cluster.host(follower).underlay)}`),
      since,
    );
    // While the source is blocked, a client there with the token is answered.
    const client = await attackerIn(cluster.host(follower), true);
    const valid = await client.request({
      op: "https",
      host: cluster.host(leader).underlay,
      port: API_PORT,
      path: "/v1/status",
      headers: { authorization: `Bearer ${cluster.token(leader)}` },
      count: 1,
    });
    assert.deepEqual(valid.statuses, ["200"]);
    for (const answered of await Promise.all(floods)) {
      const statuses = answered.statuses as string[];
      assert.ok(
        statuses.every((code) => code === "401" || code === "429"),
        statuses.join(" "),
      );
      assert.ok(statuses.includes("429"), "the flood's failures were slowed");
    }
    await assertUnharmed(since);
  });

  test(RESTART_TEST, {
    timeout: 120_000,
  }, async () => {
    const since = cluster.now();
    const target = mesh.get(leader)!;
    // From the follower's own mesh address, where its agent's connections to the leader come from:
    // more connections than either cap (16 on Raft, 64 on the internal API), each one the leader
    // closes opened again, so that every slot the source has is taken whenever one is free.
    const attacker = await attackerIn(cluster.host(follower));
    const ports = [RAFT_PORT, API_PORT];
    await attacker.request({ op: "siege", host: target, port: RAFT_PORT, count: 20 });
    await attacker.request({ op: "siege", host: target, port: API_PORT, count: 70 });
    const refused = async (port: number) =>
      (await attacker.request({ op: "siege-state", host: target, port })).refused as number;
    for (const port of ports) {
      await eventually(`the leader refusing nobody's connections to port ${port}`, async () =>
        (await refused(port)) > 0 ? true : undefined,
      );
    }
    await logged(
      leader,
      new RegExp(
        `refusing a connection from ${escaped(mesh.get(follower)!)}: ${escaped(mesh.get(follower)!)} already has 16 connections that have not authenticated`,
      ),
      since,
    );
    // The follower's agent starts again: a new Raft dial and new heartbeats, all while the siege
    // holds the source's slots.
    const pid = cluster.pid(follower);
    cluster.kill(follower);
    await eventually(`${follower}'s agent to exit`, async () =>
      cluster.alive(pid) ? undefined : true,
    );
    const restartedAt = cluster.now();
    cluster.restart(follower);
    await logged(follower, /following node|leader for term/, restartedAt);
    await eventually(`${follower} ready again on the leader`, async () => {
      const status = await cluster.status(leader);
      const node = status.nodes.find((record) => record.name === follower);
      return node?.status === "ready" ? true : undefined;
    });
    // The siege goes on past a heartbeat timeout after the restart, and is still refused.
    const before = await Promise.all(ports.map(refused));
    // An observation window, not a retry: had the leader stopped hearing the follower, it
    // would mark it down within this.
    await delay(Number(cluster.env.MILL_HEARTBEAT_TIMEOUT_MS) + 500);
    const later = await Promise.all(ports.map(refused));
    assert.ok(
      later.every((count, i) => count > before[i]!),
      `the siege went on: refused ${before.join("/")} then ${later.join("/")}`,
    );
    await attacker.request({ op: "lift" });
    await assertUnharmed(since);
  });
}

describe(
  "attacks on the node-to-node channels, in namespaces with the mesh",
  {
    skip: notRootReason,
  },
  () => attackSuite({ env: {}, restart: false }),
);

describe(
  "an agent restarted while a local user on its node holds its slots on the leader",
  {
    skip: notRootReason,
  },
  () => attackSuite({ env: { MILL_HEARTBEAT_TIMEOUT_MS: "5000" }, restart: true }),
);
