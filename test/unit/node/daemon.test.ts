/**
 * The data dir lock (mill.pid): taken exclusively, refused while a Mill process holds it, and
 * taken over from a process that is gone or is not Mill (a pid number reused after a reboot);
 * given up only by its holder. A detached join's agent stops waiting for its config when asked.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import {
  awaitConfig,
  lockDataDir,
  NodeRunningError,
  runningPid,
  unlockDataDir,
} from "../../../lib/node/daemon.ts";

const scratch = mkdtempSync(join(tmpdir(), "mill-lock-"));
// A live process that looks like an agent, and one that does not.
const agent = spawn("sh", ["-c", "sleep 600", "agent"], { stdio: "ignore" });
const other = spawn("sh", ["-c", "sleep 600"], { stdio: "ignore" });
after(() => {
  agent.kill("SIGKILL");
  other.kill("SIGKILL");
  rmSync(scratch, { recursive: true, force: true });
});

function dirWithPid(pid: number | undefined): string {
  const dir = mkdtempSync(join(scratch, "data-"));
  if (pid !== undefined) writeFileSync(join(dir, "mill.pid"), `${pid}\n`, { mode: 0o600 });
  return dir;
}

const pidIn = (dir: string) => readFileSync(join(dir, "mill.pid"), "utf8");

describe("lockDataDir", () => {
  test("takes a free data dir: mill.pid holds this process's pid", () => {
    const dir = dirWithPid(undefined);
    lockDataDir(dir);
    assert.equal(pidIn(dir), `${process.pid}\n`);
    // Taking it again from the same process is no conflict.
    lockDataDir(dir);
    assert.equal(pidIn(dir), `${process.pid}\n`);
  });

  test("refuses a dir a live node holds, naming its pid, and leaves the file alone", () => {
    const dir = dirWithPid(agent.pid);
    assert.throws(
      () => lockDataDir(dir),
      (error: Error) =>
        error instanceof NodeRunningError &&
        error.message === `a Mill node already runs in ${dir} (pid ${agent.pid})`,
    );
    assert.equal(pidIn(dir), `${agent.pid}\n`);
  });

  test("takes over from a process that is gone, or that is not Mill", () => {
    const gone = spawn("true");
    const exited = new Promise((resolve) => gone.once("exit", resolve));
    return exited.then(() => {
      for (const holder of [gone.pid, other.pid]) {
        const dir = dirWithPid(holder);
        assert.equal(runningPid(dir), undefined);
        lockDataDir(dir);
        assert.equal(pidIn(dir), `${process.pid}\n`);
      }
    });
  });
});

describe("unlockDataDir", () => {
  test("removes mill.pid when this process holds it, and never another node's", () => {
    const mine = dirWithPid(undefined);
    lockDataDir(mine);
    unlockDataDir(mine);
    assert.equal(existsSync(join(mine, "mill.pid")), false);
    const theirs = dirWithPid(agent.pid);
    unlockDataDir(theirs);
    assert.equal(pidIn(theirs), `${agent.pid}\n`);
  });
});

describe("awaitConfig", () => {
  test("a stop asked for while it waits ends the wait with a reason, at once", async () => {
    const dir = dirWithPid(undefined);
    const stopping = new AbortController();
    const waiting = awaitConfig(dir, stopping.signal);
    stopping.abort("SIGTERM");
    await assert.rejects(
      waiting,
      /^StoppedError: stopped by SIGTERM while waiting for .*'s config$/,
    );
  });
});
