/**
 * One node per data dir, with the real executable on loopback (`--mesh none`): a second agent,
 * init or join on a live node's data dir is refused naming the running node's pid and touches
 * nothing; an agent that cannot bind its address exits 1 instead of hanging, and leaves no
 * process and no pid file behind; an agent stopped by SIGTERM while it starts exits 0 and gives
 * the lock up.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { AWAIT_CONFIG_VARIABLE } from "../../lib/node/daemon.ts";
import { eventually, LocalCluster } from "./harness.ts";

/** TEST-NET-1 (RFC 5737): an address no host here has. */
const NOT_HERE = "192.0.2.1";

describe("the data dir lock", () => {
  // Default health timings: a node slowed by a loaded machine is not marked down meanwhile.
  const cluster = new LocalCluster("dist", {});
  let token = "";
  before(async () => {
    token = await cluster.init();
  });
  after(() => cluster.cleanup());

  test("a second agent, init or join on a live node's data dir is refused and changes nothing", async () => {
    const dir = cluster.dataDir(1);
    const pid = cluster.pid(1)!;
    const config = readFileSync(join(dir, "node.json"), "utf8");
    const pidFile = statSync(join(dir, "mill.pid"));
    const refusal = new RegExp(`^error: .*a Mill node (already )?runs in ${dir} \\(pid ${pid}\\)`);
    const attempts = [
      ["agent", "--data-dir", dir],
      [
        "init",
        "--advertise",
        cluster.address(1),
        "--mesh",
        "none",
        "--no-service",
        "--data-dir",
        dir,
      ],
      ["join", `${cluster.address(1)}:4400`, "--token", token, "--advertise", cluster.address(1)],
    ];
    for (const argv of attempts) {
      const second = await cluster.run(
        argv[0] === "join" ? [...argv, "--mesh", "none", "--no-service", "--data-dir", dir] : argv,
        { timeoutMs: 15_000 },
      );
      assert.equal(second.status, 1, `${argv[0]}: ${second.stderr}`);
      assert.match(second.stderr, refusal, argv[0]);
    }
    assert.equal(cluster.pid(1), pid);
    assert.equal(statSync(join(dir, "mill.pid")).mtimeMs, pidFile.mtimeMs);
    assert.equal(readFileSync(join(dir, "node.json"), "utf8"), config);
    const status = await cluster.status(1);
    assert.deepEqual(
      status.nodes.map((node) => [node.name, node.status]),
      [["node-1", "ready"]],
    );
  });

  test("an agent that cannot bind its address exits 1 and leaves nothing running", async () => {
    cluster.kill(1, "SIGTERM");
    await eventually("node 1 to stop", async () =>
      cluster.pid(1) === undefined ? true : undefined,
    );
    const path = join(cluster.dataDir(1), "node.json");
    const config = JSON.parse(readFileSync(path, "utf8")) as { advertise: string };
    writeFileSync(path, JSON.stringify({ ...config, advertise: NOT_HERE }), { mode: 0o600 });
    // The harness kills a command still running after 15 s: a hanging agent fails the test.
    const started = await cluster.run(["agent", "--data-dir", cluster.dataDir(1)], {
      timeoutMs: 15_000,
    });
    assert.equal(started.status, 1, started.stderr);
    assert.match(started.stderr, /^error: .*EADDRNOTAVAIL/m);
    assert.equal(cluster.pid(1), undefined, "no pid file is left behind");
  });

  test("SIGTERM while a join's agent waits for its config: it exits 0 and gives the lock up", async () => {
    // As `mill join` starts it: before the registration has written the node's config.
    const dir = join(cluster.root, "waiting");
    mkdirSync(dir, { mode: 0o700 });
    const child = spawn(cluster.binary, ["agent", "--data-dir", dir], {
      env: { PATH: process.env.PATH, [AWAIT_CONFIG_VARIABLE]: "1" },
      stdio: "ignore",
    });
    const exited = once(child, "exit");
    try {
      // The lock is taken first; from then on the agent waits (up to two minutes) for node.json.
      const pidFile = join(dir, "mill.pid");
      await eventually("the agent to lock its data dir", async () =>
        existsSync(pidFile) && readFileSync(pidFile, "utf8") === `${child.pid}\n`
          ? true
          : undefined,
      );
      child.kill("SIGTERM");
      const [code, signal] = await exited;
      assert.deepEqual(
        [code, signal],
        [0, null],
        "it stopped itself rather than die by the signal",
      );
      assert.equal(existsSync(join(dir, "mill.pid")), false, "the lock is given up");
    } finally {
      child.kill("SIGKILL");
    }
  });
});
