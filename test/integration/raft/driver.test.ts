import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type RunningRaftNode, startRaftNode } from "../../../lib/raft/start.ts";
import { type NodeId, NotLeaderError } from "../../../lib/raft/types.ts";
import { pollUntil } from "../../../lib/shared/poll.ts";
import { PROTOCOL_VERSION } from "../../../lib/shared/protocol.ts";
import { ListMachine } from "./list-machine.ts";
import { memberCertificates, transportTls } from "./member-tls.ts";

/** Polls `probe` until it returns a value, and fails the test with `what` if it never does. */
async function waitFor<T>(
  what: string,
  probe: () => T | undefined,
  timeoutMs = 10_000,
): Promise<T> {
  let value: T | undefined;
  await pollUntil(
    () => {
      value = probe();
      return value !== undefined;
    },
    timeoutMs,
    () => new Error(`timed out waiting for ${what}`),
    10,
  );
  return value as T;
}

const command = (text: string) => new TextEncoder().encode(text);

describe("raft driver: a three-node cluster on 127.0.0.1", () => {
  let root: string;
  const ports = new Map<NodeId, number>();
  const certs = memberCertificates([1, 2, 3, 4, 5]);
  const running = new Map<NodeId, { node: RunningRaftNode; machine: ListMachine }>();

  async function start(id: NodeId, bootstrap = false) {
    const machine = new ListMachine();
    const node = await startRaftNode({
      id,
      dir: join(root, `node-${id}`),
      stateMachine: machine,
      host: "127.0.0.1",
      port: ports.get(id) ?? 0,
      peers: (peer) => (ports.has(peer) ? `127.0.0.1:${ports.get(peer)}` : undefined),
      tls: transportTls(certs, id),
      protocol: PROTOCOL_VERSION,
      bootstrap,
      tickMs: 20,
      snapshotEvery: 60,
      catchUpEntries: 5,
    });
    ports.set(id, node.port);
    running.set(id, { node, machine });
    return { node, machine };
  }

  async function stop(id: NodeId) {
    await running.get(id)!.node.stop();
    running.delete(id);
  }

  const leader = () =>
    waitFor("a leader", () => {
      const leaders = [...running.values()].filter((r) => r.node.status().role === "leader");
      return leaders.length === 1 ? leaders[0]!.node : undefined;
    });

  /** Proposes through the current leader, following leader changes. */
  async function proposeAll(texts: string[]) {
    const node = await leader();
    return Promise.all(texts.map((t) => node.propose(command(t))));
  }

  async function assertSameState(expectedLength: number) {
    for (const [id, { node, machine }] of running) {
      await waitFor(`node ${id} to know the leader`, () => node.status().leader || undefined);
      await node.readBarrier();
      assert.equal(machine.items.length, expectedLength, `node ${id}`);
    }
    const [first, ...rest] = [...running.values()].map((r) => r.machine.items);
    for (const items of rest) assert.deepEqual(items, first);
  }

  before(async () => {
    root = await fs.mkdtemp(join(tmpdir(), "mill-driver-"));
  });
  after(async () => {
    for (const id of [...running.keys()]) await stop(id);
    await fs.rm(root, { recursive: true, force: true });
  });

  test("a bootstrapped node elects itself and grows to three voters", async () => {
    const { node } = await start(1, true);
    assert.equal((await leader()).id, 1);
    await start(2);
    await start(3);
    await node.addVoter(2);
    await node.addVoter(3);
    await node.addVoter(3);
    assert.deepEqual([...node.status().membership.voters].sort(), [1, 2, 3]);
  });

  test("100 proposals commit in order and every node applies the same", async () => {
    const texts = Array.from({ length: 100 }, (_, i) => `cmd-${i}`);
    const results = await proposeAll(texts);
    assert.deepEqual(
      results,
      Array.from({ length: 100 }, (_, i) => i + 1),
    );
    await assertSameState(100);
    assert.deepEqual(running.get(1)!.machine.items, texts);
  });

  test("a follower refuses proposals, naming the leader", async () => {
    const current = await leader();
    const follower = [...running.values()].find((r) => r.node.id !== current.id)!.node;
    await assert.rejects(follower.propose(command("x")), (error: unknown) => {
      assert.ok(error instanceof NotLeaderError);
      assert.equal(error.leader, current.id);
      return true;
    });
  });

  test("stopping the leader elects another and proposals continue", async () => {
    const old = await leader();
    await stop(old.id);
    const next = await leader();
    assert.notEqual(next.id, old.id);
    await proposeAll(Array.from({ length: 20 }, (_, i) => `after-${i}`));
    await assertSameState(120);
  });

  test("a node restarted from disk catches up", async () => {
    const stopped = [1, 2, 3].find((id) => !running.has(id))!;
    const { machine } = await start(stopped);
    await proposeAll(["welcome-back"]);
    await assertSameState(121);
    assert.equal(machine.items.at(-1), "welcome-back");
    const files = await fs.readdir(join(root, `node-${stopped}`));
    assert.ok(
      files.some((f) => f.endsWith(".snap")),
      "snapshots were taken along the way",
    );
  });

  test("a fresh fourth node is added as a voter and receives the state", async () => {
    const { machine } = await start(4);
    await (await leader()).addVoter(4);
    assert.deepEqual([...(await leader()).status().membership.voters].sort(), [1, 2, 3, 4]);
    await proposeAll(["four"]);
    await assertSameState(122);
    assert.equal(machine.items[0], "cmd-0");
  });

  test("leadership moves on request", async () => {
    const current = await leader();
    const target = [...running.keys()].find((id) => id !== current.id)!;
    await current.transferLeadership(target);
    assert.equal((await leader()).id, target);
  });
});
