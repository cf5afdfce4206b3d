import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { EXIT_FAILED, EXIT_REMOVED } from "../../../lib/cli/errors.ts";
import { REMOVED_EXIT_STATUS } from "../../../lib/node/removal.ts";
import {
  describeHandOver,
  handOverToSystemd,
  refreshUnit,
  removeService,
  renderUnit,
  ServiceError,
  type ServiceHost,
  STABLE_EXECUTABLE,
  UNIT_PATH,
  unitStanding,
} from "../../../lib/node/service.ts";

describe("the unit file", () => {
  const unit = renderUnit("/usr/local/bin/mill", "/var/lib/mill");

  test("runs the agent of the data dir from the stable path, restarted always", () => {
    const lines = unit.split("\n");
    for (const line of [
      "ExecStart=/usr/local/bin/mill agent --data-dir /var/lib/mill",
      "Restart=always",
      "Wants=network-online.target",
      "After=network-online.target",
      "AmbientCapabilities=CAP_NET_ADMIN",
      "LimitNOFILE=1048576",
      "WantedBy=multi-user.target",
    ]) {
      assert.ok(lines.includes(line), `missing: ${line}`);
    }
  });

  test("quotes a data dir with spaces and escapes systemd's specifiers and variables", () => {
    const odd = renderUnit("/usr/local/bin/mill", '/srv/my "mill" 100%$HOME');
    assert.ok(
      odd.includes(
        'ExecStart=/usr/local/bin/mill agent --data-dir "/srv/my \\"mill\\" 100%%$$HOME"\n',
      ),
      odd,
    );
  });

  test("a removed node's agent is not restarted: its exit status, and only it, is in RestartPreventExitStatus=", () => {
    const prevented = unit
      .split("\n")
      .filter((line) => line.startsWith("RestartPreventExitStatus="))
      .flatMap((line) => line.slice("RestartPreventExitStatus=".length).split(" "));
    assert.deepEqual(prevented, [String(REMOVED_EXIT_STATUS)]);
    // A failed agent (Raft stopped, a port taken) must come back: 1 is restarted.
    assert.notEqual(REMOVED_EXIT_STATUS, EXIT_FAILED);
    assert.equal(EXIT_REMOVED, REMOVED_EXIT_STATUS);
  });

  test("refuses a path with a control character, which no unit line can hold", () => {
    assert.throws(
      () => renderUnit("/usr/local/bin/mill", "/var/lib/mill\nExecStartPre=/bin/evil"),
      (error: Error) => error instanceof ServiceError && /control character/.test(error.message),
    );
  });
});

const scratch = mkdtempSync(join(tmpdir(), "mill-service-unit-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

/**
 * A live process that looks like a node's agent (an argument "agent"), since a pid file is only
 * believed for a Mill process (daemon.ts).
 */
const detachedNode = spawn("sh", ["-c", "sleep 600", "agent"], { stdio: "ignore" });
after(() => detachedNode.kill("SIGKILL"));

/** A data dir whose mill.pid names that live process, like a detached node's. */
function dataDirWithNode(): string {
  const dir = mkdtempSync(join(scratch, "data-"));
  writeFileSync(join(dir, "mill.pid"), `${detachedNode.pid}\n`);
  return dir;
}

/** Records every call in order; `fail` makes one systemctl subcommand fail. */
function fakeHost(overrides: Partial<ServiceHost> = {}, fail?: string) {
  const calls: string[] = [];
  const files = new Map<string, string>();
  const host: ServiceHost = {
    systemdIsInit: () => true,
    isRoot: () => true,
    executable: () => "/root/Downloads/mill-linux-x64",
    installExecutable: async (from, to) => {
      calls.push(`install ${from} ${to}`);
    },
    writeUnit: async (path, text) => {
      calls.push(`write ${path}`);
      files.set(path, text);
    },
    readUnit: async (path) => files.get(path),
    removeFile: async (path) => {
      calls.push(`remove ${path}`);
      files.delete(path);
    },
    exists: (path) => files.has(path),
    systemctl: async (args) => {
      calls.push(`systemctl ${args.join(" ")}`);
      if (args[0] === fail) throw new ServiceError(`systemctl ${args.join(" ")} failed: no`);
    },
    stopProcess: async (pid) => {
      calls.push(`stop ${pid === detachedNode.pid ? "the detached node" : pid}`);
    },
    startDetached: () => {
      calls.push("start detached");
    },
    serving: async (_dataDir, previousPid) => {
      calls.push(
        `serving? (not ${previousPid === detachedNode.pid ? "the detached node" : previousPid})`,
      );
      return true;
    },
    ...overrides,
  };
  return { host, calls, files };
}

describe("handing the node over to systemd", () => {
  test("installs the executable and the unit, enables it, stops the detached node, starts it", async () => {
    const dataDir = dataDirWithNode();
    const { host, calls, files } = fakeHost();
    const outcome = await handOverToSystemd(dataDir, true, host);
    assert.deepEqual(outcome, { kind: "service", unit: UNIT_PATH, executable: STABLE_EXECUTABLE });
    assert.deepEqual(calls, [
      `install /root/Downloads/mill-linux-x64 ${STABLE_EXECUTABLE}`,
      `write ${UNIT_PATH}`,
      "systemctl daemon-reload",
      "systemctl enable mill.service",
      "stop the detached node",
      "systemctl start mill.service",
      "serving? (not the detached node)",
    ]);
    assert.equal(files.get(UNIT_PATH), renderUnit(STABLE_EXECUTABLE, dataDir));
  });

  test("run from the stable path already, the executable is not copied", async () => {
    const { host, calls } = fakeHost({ executable: () => STABLE_EXECUTABLE });
    await handOverToSystemd(dataDirWithNode(), true, host);
    assert.ok(!calls.some((call) => call.startsWith("install")));
  });

  for (const [why, overrides, wanted, expected] of [
    ["--no-service", {}, false, "no service installed (--no-service)"],
    ["PID 1 is not systemd", { systemdIsInit: () => false }, true, "PID 1 is not systemd here"],
    ["not root", { isRoot: () => false }, true, "not root, so no systemd service installed"],
    [
      "running from source",
      { executable: () => undefined },
      true,
      "running from source, so no systemd service installed",
    ],
  ] as const) {
    test(`${why}: nothing is touched and the node stays detached`, async () => {
      const { host, calls } = fakeHost(overrides);
      const dataDir = dataDirWithNode();
      const outcome = await handOverToSystemd(dataDir, wanted, host);
      assert.deepEqual(outcome, { kind: "detached", why: expected });
      assert.deepEqual(calls, []);
      assert.equal(
        describeHandOver(outcome, dataDir),
        `${expected}: after a reboot, start the node again with \`mill agent --data-dir ${dataDir}\` (or run that under your own supervisor)`,
      );
    });
  }

  test("enable fails: the unit is removed again and the detached node is left alone", async () => {
    const { host, calls, files } = fakeHost({}, "enable");
    await assert.rejects(handOverToSystemd(dataDirWithNode(), true, host), /enable mill\.service/);
    assert.equal(files.has(UNIT_PATH), false);
    assert.ok(!calls.some((call) => call.startsWith("stop")), "the node was not stopped");
  });

  test("start fails: the node is started detached again and the error says so", async () => {
    const { host, calls } = fakeHost({}, "start");
    await assert.rejects(
      handOverToSystemd(dataDirWithNode(), true, host),
      /start mill\.service failed: no; the node runs detached again \(see journalctl -u mill\.service\)/,
    );
    assert.deepEqual(calls.slice(-2), ["systemctl start mill.service", "start detached"]);
  });
});

describe("removing the service (mill leave)", () => {
  test("disables and stops it, removes the unit, reloads systemd", async () => {
    const { host, calls, files } = fakeHost();
    files.set(UNIT_PATH, "unit");
    assert.equal(await removeService(host), true);
    assert.deepEqual(calls, [
      "systemctl disable --now mill.service",
      `remove ${UNIT_PATH}`,
      "systemctl daemon-reload",
    ]);
  });

  test("no unit, or no systemd: nothing to do", async () => {
    const { host, calls } = fakeHost();
    assert.equal(await removeService(host), false);
    assert.deepEqual(calls, []);
  });
});

/** The unit as mill wrote it before 16ad544: without RestartPreventExitStatus= and its comment. */
function unitBefore16ad544(dataDir: string): string {
  const unit = renderUnit(STABLE_EXECUTABLE, dataDir);
  const old = unit.replace(
    /# A node the cluster removed [^\n]*\nRestartPreventExitStatus=[^\n]*\n/,
    "",
  );
  assert.notEqual(old, unit, "the setting was taken out");
  return old;
}

describe("an up-to-date unit", () => {
  const dataDir = "/var/lib/mill";

  test("what this version writes is current; the unit of before 16ad544 is outdated, lacking RestartPreventExitStatus=", () => {
    assert.deepEqual(unitStanding(renderUnit(STABLE_EXECUTABLE, dataDir), dataDir), {
      kind: "current",
    });
    assert.deepEqual(unitStanding(unitBefore16ad544(dataDir), dataDir), {
      kind: "outdated",
      lacking: [`RestartPreventExitStatus=${REMOVED_EXIT_STATUS}`],
    });
  });

  test("a unit edited by hand is outdated too (local settings belong in a drop-in)", () => {
    const edited = renderUnit(STABLE_EXECUTABLE, dataDir).replace("RestartSec=2", "RestartSec=30");
    assert.deepEqual(unitStanding(edited, dataDir), {
      kind: "outdated",
      lacking: ["RestartSec=2"],
    });
  });

  test("a unit of another data dir, of another executable, or not written by mill is not this node's", () => {
    for (const text of [
      renderUnit(STABLE_EXECUTABLE, "/srv/other"),
      renderUnit("/opt/mill", dataDir),
      renderUnit(STABLE_EXECUTABLE, dataDir).split("\n").slice(1).join("\n"),
      "",
    ]) {
      assert.deepEqual(unitStanding(text, dataDir), { kind: "not-ours" }, text);
    }
  });
});

describe("the agent's refresh of its unit", () => {
  const dataDir = "/var/lib/mill";

  test("an outdated unit is rewritten, then systemd reloaded, and the line says what it lacked", async () => {
    const { host, calls, files } = fakeHost();
    files.set(UNIT_PATH, unitBefore16ad544(dataDir));
    assert.equal(
      await refreshUnit(dataDir, host),
      `${UNIT_PATH} was written by an older mill (it lacked RestartPreventExitStatus=${REMOVED_EXIT_STATUS}): rewrote it and reloaded systemd`,
    );
    assert.deepEqual(calls, [`write ${UNIT_PATH}`, "systemctl daemon-reload"]);
    assert.equal(files.get(UNIT_PATH), renderUnit(STABLE_EXECUTABLE, dataDir));
  });

  for (const [why, overrides, unit] of [
    ["a current unit", {}, renderUnit(STABLE_EXECUTABLE, dataDir)],
    ["another node's unit", {}, unitBefore16ad544("/srv/other")],
    ["no unit", {}, undefined],
    ["PID 1 is not systemd", { systemdIsInit: () => false }, unitBefore16ad544(dataDir)],
    ["not root", { isRoot: () => false }, unitBefore16ad544(dataDir)],
  ] as const) {
    test(`${why}: nothing is touched`, async () => {
      const { host, calls, files } = fakeHost(overrides);
      if (unit !== undefined) files.set(UNIT_PATH, unit);
      assert.equal(await refreshUnit(dataDir, host), undefined);
      assert.deepEqual(calls, []);
      assert.equal(files.get(UNIT_PATH), unit);
    });
  }

  test("a reload that fails says what to do", async () => {
    const { host, files } = fakeHost({}, "daemon-reload");
    files.set(UNIT_PATH, unitBefore16ad544(dataDir));
    await assert.rejects(
      refreshUnit(dataDir, host),
      (error: Error) =>
        error instanceof ServiceError &&
        error.message ===
          `${UNIT_PATH} was written by an older mill (it lacked RestartPreventExitStatus=${REMOVED_EXIT_STATUS}) and could not be brought up to date: systemctl daemon-reload failed: no; fix that and restart the node (systemctl restart mill.service), which rewrites it`,
    );
  });
});
