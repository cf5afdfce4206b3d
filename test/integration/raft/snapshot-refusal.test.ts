/**
 * A received snapshot is checked by the state machine before Raft sees it: a malformed one is
 * refused and logged, nothing reaches the disk, the term stays, and the node keeps working. A
 * driver that stops on a fatal error says so through onFatal.
 */
import assert from "node:assert/strict";
import { fdatasyncSync, promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { decode, encode } from "cbor-x";
import { Driver, type DriverOptions } from "../../../lib/raft/driver.ts";
import { encodeSnapshotFile } from "../../../lib/raft/storage/records.ts";
import { openStorage, type StorageFs } from "../../../lib/raft/storage/storage.ts";
import type { Message, StateMachine } from "../../../lib/raft/types.ts";
import { systemClock } from "../../../lib/shared/clock.ts";
import { pollUntil } from "../../../lib/shared/poll.ts";
import { ListMachine } from "./list-machine.ts";

/** check() accepts only CBOR lists of strings, as restore() needs. */
class CheckedList extends ListMachine {
  check(data: Uint8Array): void {
    let items: unknown;
    try {
      items = decode(data);
    } catch {
      throw new Error("list snapshot is not valid CBOR");
    }
    if (!Array.isArray(items) || !items.every((item) => typeof item === "string")) {
      throw new Error("list snapshot is not a list of strings");
    }
  }
  override restore(data: Uint8Array): void {
    this.check(data);
    super.restore(data);
  }
}

const noTransport = { send() {}, close: async () => {} };
const text = (value: string) => new TextEncoder().encode(value);

/** A snapshot frame as a node claiming to be node 2 in term 99 would send it. */
function forgedSnapshot(data: Uint8Array, index = 500): Message {
  return {
    type: "snapshot",
    from: 2,
    to: 1,
    term: 99,
    snapshot: { meta: { index, term: 99, membership: { voters: [2], learners: [] } }, data },
  };
}

describe("raft driver: a received snapshot is validated before it is persisted", () => {
  let root: string;
  before(async () => {
    root = await fs.mkdtemp(join(tmpdir(), "mill-snapshot-refusal-"));
  });
  after(async () => {
    await fs.rm(root, { recursive: true, force: true });
  });

  async function open(dir: string, machine: StateMachine, options: Partial<DriverOptions> = {}) {
    const storage = await openStorage(dir, options.warn ? { warn: options.warn } : {});
    // As lib/raft/start.ts does: a driver that refuses to open leaves its storage to its opener.
    return Driver.open(
      { id: 1, stateMachine: machine, bootstrap: true, tickMs: 10, ...options },
      { storage, transport: noTransport, clock: systemClock },
    ).catch(async (error: unknown) => {
      await storage.close();
      throw error;
    });
  }

  const leading = (driver: Driver) =>
    pollUntil(
      () => driver.status().role === "leader",
      10_000,
      () => new Error("the single node never led"),
      10,
    );

  test("a malformed snapshot is refused once in the log, and nothing changes", async () => {
    const dir = join(root, "refuse");
    const warnings: string[] = [];
    const machine = new CheckedList();
    const driver = await open(dir, machine, { warn: (line) => warnings.push(line) });
    await leading(driver);
    await driver.propose(text("one"));
    const term = driver.status().term;

    // Sent twice, as a leader resends: logged once.
    for (let i = 0; i < 2; i++) driver.receive(forgedSnapshot(new Uint8Array([0xff, 0x00])));
    driver.receive(forgedSnapshot(encode({ not: "a list" }), 501));
    await driver.propose(text("two"));

    assert.equal(driver.status().term, term, "the forged term was not taken");
    assert.equal(driver.status().role, "leader");
    assert.deepEqual(machine.items, ["one", "two"]);
    assert.deepEqual(
      (await fs.readdir(dir)).filter((name) => name.endsWith(".snap")),
      [],
      "nothing was persisted",
    );
    assert.deepEqual(warnings, [
      "raft node 1: refused a snapshot from node 2 (term 99, index 500): list snapshot is not valid CBOR",
      "raft node 1: refused a snapshot from node 2 (term 99, index 501): list snapshot is not a list of strings",
    ]);
    await driver.stop();

    const again = new CheckedList();
    const reopened = await open(dir, again);
    await leading(reopened);
    assert.deepEqual(again.items, ["one", "two"], "the node starts again from its own disk");
    await reopened.stop();
  });

  test("the same frame with data that passes check is installed (what the check stops)", async () => {
    const dir = join(root, "accept");
    const machine = new CheckedList();
    const driver = await open(dir, machine);
    await leading(driver);
    driver.receive(forgedSnapshot(encode(["forged"])));
    await pollUntil(
      () => machine.items.length > 0,
      10_000,
      () => new Error("the snapshot was never installed"),
      10,
    );
    assert.deepEqual(machine.items, ["forged"]);
    assert.equal(driver.status().term, 99);
    await driver.stop();
  });

  test("a cluster's only voter with a snapshot it cannot restore refuses to start, changing nothing", async () => {
    const dir = join(root, "stored");
    const storage = await openStorage(dir);
    await storage.saveSnapshot({
      meta: { index: 7, term: 2, membership: { voters: [1], learners: [] } },
      data: new Uint8Array([0xff, 0x00]),
    });
    await storage.close();
    const before = await fs.readdir(dir);
    await assert.rejects(
      open(dir, new CheckedList()),
      /^Error: raft node 1: the snapshot at index 7 in its storage cannot be restored: list snapshot is not valid CBOR; this node is its cluster's only voter, so no other node holds that state: restore the data directory from a backup$/,
    );
    assert.deepEqual(await fs.readdir(dir), before);
  });

  test("a planted snapshot the state machine's check refuses is set aside, never restored", async () => {
    const dir = join(root, "planted");
    const storage = await openStorage(dir);
    await storage.save({ entries: [], hardState: { term: 4, vote: 2, commit: 7 } });
    await storage.saveSnapshot({
      meta: { index: 7, term: 4, membership: { voters: [1, 2, 3], learners: [] } },
      data: encode({ not: "a list" }),
    });
    await storage.close();
    /** Restores anything: only the driver's own check stands between the file and the state. */
    class Trusting extends ListMachine {
      restored = 0;
      check = (data: Uint8Array) => new CheckedList().check(data);
      override restore(data: Uint8Array): void {
        this.restored++;
        super.restore(data);
      }
    }
    for (const start of ["first", "second"]) {
      const warnings: string[] = [];
      const machine = new Trusting();
      const driver = await open(dir, machine, {
        bootstrap: false,
        warn: (line) => warnings.push(line),
      });
      assert.equal(machine.restored, 0, `${start} start: the planted state was never restored`);
      const status = driver.status();
      assert.deepEqual(status.recovering, { term: 4, index: 7 });
      assert.deepEqual([status.term, status.lastIndex, status.role], [4, 0, "follower"]);
      assert.deepEqual(
        warnings,
        start === "first"
          ? [
              `raft node 1: the snapshot at index 7 in its storage cannot be restored: list snapshot is not a list of strings; set it aside as ${join(dir, "snapshot-0000000000000007.snap.set-aside")}, discarded its log and catches up from the leader, without voting until its log reaches index 7 of term 4`,
            ]
          : [],
      );
      await driver.stop();
    }
    assert.deepEqual(
      (await fs.readdir(dir)).filter((name) => name.includes(".snap")),
      ["snapshot-0000000000000007.snap.set-aside"],
    );
  });

  test("a planted newer snapshot the check refuses is set aside, and the node opens from its own and keeps its log", async () => {
    const dir = join(root, "planted-newer");
    const membership = { voters: [1, 2, 3], learners: [] };
    const storage = await openStorage(dir);
    const entries = ["a", "b", "c", "d", "e", "f"].map((item, i) => ({
      index: i + 1,
      term: 4,
      kind: "command" as const,
      data: text(item),
    }));
    await storage.save({ entries, hardState: { term: 4, vote: 2, commit: 6 } });
    await storage.saveSnapshot({
      meta: { index: 3, term: 4, membership },
      data: encode(["a", "b", "c"]),
    });
    await storage.close();
    const planted = join(dir, "snapshot-0000000000000009.snap");
    await fs.writeFile(
      planted,
      encodeSnapshotFile({
        meta: { index: 9, term: 4, membership },
        data: encode({ not: "a list" }),
      }),
    );

    const warnings: string[] = [];
    const machine = new CheckedList();
    const driver = await open(dir, machine, {
      bootstrap: false,
      warn: (line) => warnings.push(line),
    });
    assert.deepEqual(warnings, [
      `raft node 1: the snapshot at index 9 in its storage cannot be restored: list snapshot is not a list of strings; set it aside as ${planted}.set-aside and opens from the snapshot at index 3 and the log after it`,
    ]);
    const status = driver.status();
    assert.equal(status.recovering, undefined, "it lost nothing");
    assert.deepEqual([status.term, status.lastIndex, status.commit], [4, 6, 6]);
    await pollUntil(
      () => machine.items.length === 6,
      10_000,
      () => new Error(`applied ${machine.items.join(",")}`),
      10,
    );
    assert.deepEqual(machine.items, ["a", "b", "c", "d", "e", "f"]);
    await driver.stop();
    assert.deepEqual((await fs.readdir(dir)).filter((name) => name.includes(".snap")).sort(), [
      "snapshot-0000000000000003.snap",
      "snapshot-0000000000000009.snap.set-aside",
    ]);
  });

  test("when the older snapshot fails the check too, every snapshot goes aside and the log is lost", async () => {
    const dir = join(root, "both-bad");
    const membership = { voters: [1, 2, 3], learners: [] };
    const storage = await openStorage(dir);
    const entries = ["a", "b", "c", "d"].map((item, i) => ({
      index: i + 1,
      term: 4,
      kind: "command" as const,
      data: text(item),
    }));
    await storage.save({ entries, hardState: { term: 4, vote: 2, commit: 4 } });
    await storage.saveSnapshot({
      meta: { index: 3, term: 4, membership },
      data: encode({ not: "a list" }),
    });
    await storage.close();
    await fs.writeFile(join(dir, "snapshot-0000000000000009.snap"), "planted");

    const warnings: string[] = [];
    const machine = new CheckedList();
    const driver = await open(dir, machine, {
      bootstrap: false,
      warn: (line) => warnings.push(line),
    });
    assert.equal(warnings.length, 2, warnings.join("\n"));
    assert.match(
      warnings[0]!,
      /the snapshot at index 9 .* and opens from the snapshot at index 3 and the log after it$/,
    );
    assert.match(
      warnings[1]!,
      /the snapshot at index 3 in its storage cannot be restored: list snapshot is not a list of strings; set it aside as .*snapshot-0000000000000003\.snap\.set-aside, discarded its log/,
    );
    const status = driver.status();
    assert.deepEqual(status.recovering, { term: 4, index: 4 }, "the entries of term 4 it held");
    assert.deepEqual([status.term, status.lastIndex], [4, 0]);
    assert.deepEqual(machine.items, [], "nothing was restored");
    await driver.stop();
    assert.deepEqual((await fs.readdir(dir)).filter((name) => name.includes(".snap")).sort(), [
      "snapshot-0000000000000003.snap.set-aside",
      "snapshot-0000000000000009.snap.set-aside",
    ]);
  });

  test("a driver whose disk fails stops and calls onFatal with the error", async () => {
    const dir = join(root, "fatal");
    let failSyncs = false;
    const failing: StorageFs = {
      ...fs,
      fdatasyncSync(fd) {
        if (failSyncs) throw new Error("EIO: i/o error, fdatasync");
        fdatasyncSync(fd);
      },
    };
    const storage = await openStorage(dir, { fs: failing });
    const fatal = new Promise<Error>((resolve) => {
      void Driver.open(
        {
          id: 1,
          stateMachine: new CheckedList(),
          bootstrap: true,
          tickMs: 10,
          warn: () => {},
          onFatal: resolve,
        },
        { storage, transport: noTransport, clock: systemClock },
      ).then(async (driver) => {
        await leading(driver);
        failSyncs = true;
        await assert.rejects(driver.propose(text("lost")), /EIO/);
      });
    });
    assert.match((await fatal).message, /EIO: i\/o error, fdatasync/);
  });
});
