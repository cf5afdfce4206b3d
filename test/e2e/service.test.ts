/**
 * `mill init` and `mill join` on a host whose PID 1 is systemd, played in a private mount
 * namespace (root only): /run/systemd/system exists there, /etc/systemd/system and /usr/local/bin
 * are folders of the test, and `systemctl` is a stub first on PATH that records its arguments and,
 * like systemd, starts the unit's ExecStart on `start`, noting the exit status of that process
 * (which systemd weighs against the unit's Restart= settings). The real dist/mill does the rest.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { renderUnit } from "../../lib/node/service.ts";
import { eventually, exited } from "./harness.ts";

const repo = new URL("../..", import.meta.url).pathname;
const mill = join(repo, "dist", "mill");
const notRoot = process.getuid?.() !== 0 && "needs root for a private mount namespace";
const scratch = mkdtempSync(join(tmpdir(), "mill-service-"));
const subnet = `127.${1 + Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`;
const started: string[] = [];

after(async () => {
  const killed: number[] = [];
  for (const dataDir of started) {
    const pidFile = join(dataDir, "mill.pid");
    if (!existsSync(pidFile)) continue;
    const pid = Number(readFileSync(pidFile, "utf8"));
    try {
      process.kill(pid, "SIGKILL");
      killed.push(pid);
    } catch {
      // already gone
    }
  }
  // A node still writing into its data dir would make removing the scratch dir fail.
  for (const pid of killed) await exited(`node pid ${pid}`, pid);
  rmSync(scratch, { recursive: true, force: true });
});

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

/** A systemd host of our own: its folders, the stub's record, and `mill` run inside it. */
class FakeSystemdHost {
  readonly root: string;
  readonly dataDir: string;

  constructor(readonly name: string) {
    this.root = mkdtempSync(join(scratch, `${name}-`));
    this.dataDir = join(this.root, "data");
    for (const dir of ["etc", "bin", "stub"]) mkdirSync(join(this.root, dir));
    const stub = join(this.root, "stub", "systemctl");
    writeFileSync(
      stub,
      `#!/bin/sh
echo "$*" >> ${this.root}/systemctl.log
# The node init or join left running detached, which the hand-over must stop.
if [ "$1" = enable ]; then cat ${this.dataDir}/mill.pid > ${this.root}/detached.pid; fi
if [ "$1" = start ]; then
  command=$(sed -n 's/^ExecStart=//p' /etc/systemd/system/$2)
  setsid sh -c "$command; echo \\$? > ${this.root}/service.exit" > ${this.root}/service.log 2>&1 < /dev/null &
fi
`,
    );
    chmodSync(stub, 0o755);
    started.push(this.dataDir);
  }

  get unitPath(): string {
    return join(this.root, "etc", "mill.service");
  }

  get installed(): string {
    return join(this.root, "bin", "mill");
  }

  systemctlCalls(): string[] {
    const log = join(this.root, "systemctl.log");
    return existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : [];
  }

  pid(): number {
    return Number(readFileSync(join(this.dataDir, "mill.pid"), "utf8"));
  }

  /** The exit status of the service's main process, once it has exited. */
  serviceExit(): number | undefined {
    const file = join(this.root, "service.exit");
    return existsSync(file) ? Number(readFileSync(file, "utf8")) : undefined;
  }

  detachedPid(): number {
    return Number(readFileSync(join(this.root, "detached.pid"), "utf8"));
  }

  /** `dist/mill ARGS` in the namespace; `mount` makes the host look booted by systemd. */
  run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const script = `set -e
mount -t tmpfs tmpfs /run/systemd
mkdir /run/systemd/system
mount --bind ${this.root}/etc /etc/systemd/system
mount --bind ${this.root}/bin /usr/local/bin
exec "$@"`;
    return new Promise((resolve) =>
      execFile(
        "unshare",
        ["--mount", "--propagation", "private", "sh", "-c", script, "sh", mill, ...args],
        { env: { PATH: `${this.root}/stub:/usr/sbin:/usr/bin:/sbin:/bin` }, timeout: 90_000 },
        (error, stdout, stderr) =>
          resolve({ code: error ? Number(error.code) : 0, stdout, stderr }),
      ),
    );
  }
}

const nodeArgs = (host: FakeSystemdHost, node: number) => [
  "--mesh",
  "none",
  "--advertise",
  `${subnet}.${node}`,
  "--name",
  host.name,
  "--data-dir",
  host.dataDir,
];

describe("init and join hand their node over to systemd", { skip: notRoot }, () => {
  const first = new FakeSystemdHost("node-1");
  const second = new FakeSystemdHost("node-2");
  let token = "";

  /** What a hand-over must leave behind on `host`. */
  function assertHandedOver(host: FakeSystemdHost, output: string) {
    const detachedPid = host.detachedPid();
    assert.deepEqual(host.systemctlCalls(), [
      "daemon-reload",
      "enable mill.service",
      "start mill.service",
    ]);
    assert.equal(
      readFileSync(host.unitPath, "utf8"),
      renderUnit("/usr/local/bin/mill", host.dataDir),
    );
    assert.equal(
      sha256(host.installed),
      sha256(mill),
      "the executable was copied to the stable path",
    );
    const pid = host.pid();
    assert.notEqual(pid, detachedPid, "a new process runs the node");
    assert.throws(() => process.kill(detachedPid, 0), "the detached node was stopped");
    const commandLine = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    assert.deepEqual(commandLine.slice(0, 4), [
      "/usr/local/bin/mill",
      "agent",
      "--data-dir",
      host.dataDir,
    ]);
    assert.match(
      output,
      /node handed over to systemd: \/etc\/systemd\/system\/mill\.service is enabled/,
    );
  }

  test("init: unit written, enabled, the detached node replaced by the service's", async () => {
    const result = await first.run(["init", ...nodeArgs(first, 1)]);
    assert.equal(result.code, 0, result.stderr + result.stdout);
    token = /Token: (mill_t_\S+)/.exec(result.stdout)?.[1] ?? "";
    assertHandedOver(first, result.stdout + result.stderr);
    const status = await first.run(["status", "--json", "--data-dir", first.dataDir]);
    assert.equal(status.code, 0, status.stderr);
    assert.equal(JSON.parse(status.stdout).nodes[0].status, "ready");
  });

  test("join: the same hand-over once the node is a voter", async () => {
    assert.ok(token, "init gave a token");
    const result = await second.run([
      "join",
      `${subnet}.1:4400`,
      "--token",
      token,
      ...nodeArgs(second, 2),
    ]);
    assert.equal(result.code, 0, result.stderr + result.stdout);
    assertHandedOver(second, result.stdout + result.stderr);
    const status = await first.run(["status", "--json", "--data-dir", first.dataDir]);
    const nodes = JSON.parse(status.stdout).nodes as { name: string; status: string }[];
    assert.deepEqual(
      nodes.map((node) => [node.name, node.status]),
      [
        ["node-1", "ready"],
        ["node-2", "ready"],
      ],
    );
  });

  test("--no-service: systemctl is never called and the line says how to restart", async () => {
    const third = new FakeSystemdHost("node-3");
    const result = await third.run([
      "join",
      `${subnet}.1:4400`,
      "--token",
      token,
      "--no-service",
      ...nodeArgs(third, 3),
    ]);
    assert.equal(result.code, 0, result.stderr + result.stdout);
    assert.deepEqual(third.systemctlCalls(), []);
    assert.equal(existsSync(third.unitPath), false);
    // consola drops the backticks around inline code when it prints to a pipe.
    const printed = (result.stdout + result.stderr).replaceAll("\x60", "");
    const line = `no service installed (--no-service): after a reboot, start the node again with mill agent --data-dir ${third.dataDir} (or run that under your own supervisor)`;
    assert.ok(printed.includes(line), printed);
  });

  test("a removed node under systemd stops with the exit status its unit does not restart on", async () => {
    const servicePid = second.pid();
    const removed = await first.run(["remove", "node-2", "--data-dir", first.dataDir]);
    assert.equal(removed.code, 0, removed.stderr + removed.stdout);
    await eventually("node-2's service process to exit", async () => second.serviceExit());
    assert.throws(() => process.kill(servicePid, 0), "the service's agent is gone");
    const prevented = readFileSync(second.unitPath, "utf8")
      .split("\n")
      .filter((line) => line.startsWith("RestartPreventExitStatus="))
      .flatMap((line) => line.slice("RestartPreventExitStatus=".length).split(" "));
    assert.deepEqual(prevented, [String(second.serviceExit())]);
    assert.notEqual(second.serviceExit(), 0, "a failure, shown as such by systemctl status");
    assert.match(
      readFileSync(join(second.root, "service.log"), "utf8"),
      /was removed from the cluster: to join again/,
    );
    // After a reboot systemd starts the enabled unit once more: refused with the same status.
    // Under the unit an older mill wrote (before 16ad544), the agent first brings it up to date,
    // so systemd does not restart that exit either.
    const current = readFileSync(second.unitPath, "utf8");
    const older = current.replace(
      /# A node the cluster removed [^\n]*\nRestartPreventExitStatus=[^\n]*\n/,
      "",
    );
    assert.notEqual(older, current);
    writeFileSync(second.unitPath, older);
    const callsBefore = second.systemctlCalls().length;
    const rebooted = await second.run(["agent", "--data-dir", second.dataDir]);
    assert.equal(rebooted.code, second.serviceExit(), rebooted.stderr);
    assert.match(rebooted.stderr, /was removed from the cluster: to join again/);
    assert.equal(readFileSync(second.unitPath, "utf8"), current, "the unit was rewritten");
    assert.deepEqual(second.systemctlCalls().slice(callsBefore), ["daemon-reload"]);
    assert.match(
      rebooted.stdout + rebooted.stderr,
      /mill\.service was written by an older mill \(it lacked RestartPreventExitStatus=3\): rewrote it and reloaded systemd/,
    );
  });
});
