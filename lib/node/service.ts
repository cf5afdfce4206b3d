/**
 * The node as a systemd service, so a reboot brings it back: the unit file (a pure function of the
 * executable and the data dir), and the hand-over after `init`/`join`: copy the executable to a
 * stable path, write and enable /etc/systemd/system/mill.service, stop the node they left running
 * detached and start the same node under systemd. Where PID 1 is not systemd, or with
 * --no-service, it only says how to restart the node after a reboot. Also the removal for `leave`,
 * and the agent's refresh of a unit an older Mill wrote.
 * Owns: mill.service and /usr/local/bin/mill. Must not touch: what the node does, its data dir.
 */
import { execFile } from "node:child_process";
import { existsSync, lstatSync, realpathSync } from "node:fs";
import { chmod, copyFile, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import process from "node:process";
import { parseToken } from "../identity/token.ts";
import { embeddedVersions } from "../platform/assets.ts";
import { errorMessage } from "../shared/errors.ts";
import { pollUntil } from "../shared/poll.ts";
import { processExists } from "../shared/process.ts";
import { callApi } from "./client.ts";
import { loadConfig, loadToken } from "./config.ts";
import { runningPid, spawnDetached } from "./daemon.ts";
import { REMOVED_EXIT_STATUS } from "./removal.ts";

export const SERVICE_NAME = "mill.service";
export const UNIT_PATH = `/etc/systemd/system/${SERVICE_NAME}`;
/** Where the unit runs Mill from, whatever path `init` or `join` was started from. */
export const STABLE_EXECUTABLE = "/usr/local/bin/mill";

export class ServiceError extends Error {
  override name = "ServiceError";
}

/** One argument of an ExecStart= line, quoted and escaped the way systemd reads it. */
function execArgument(text: string): string {
  if ([...text].some((char) => char < " " || char === "\u007f")) {
    throw new ServiceError(
      `${JSON.stringify(text)} holds a control character: a unit cannot name it`,
    );
  }
  // `%` starts a specifier and `$` a variable in ExecStart=; doubled, each stands for itself.
  const escaped = text.replaceAll("%", "%%").replaceAll("$", () => "$$");
  return /^[\w/.,:@+=-]+$/.test(escaped)
    ? escaped
    : `"${escaped.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/** The first line of every unit Mill writes: how a unit is known as Mill's own. */
const UNIT_HEADER = "# Written by `mill init` or `mill join`; `mill leave` removes it.";

/** The ExecStart= line of the unit that runs `executable agent --data-dir dataDir`. */
function execStartLine(executable: string, dataDir: string): string {
  return `ExecStart=${[executable, "agent", "--data-dir", dataDir].map(execArgument).join(" ")}`;
}

/** The unit that runs `executable agent --data-dir dataDir`. */
export function renderUnit(executable: string, dataDir: string): string {
  return `${UNIT_HEADER}
[Unit]
Description=Mill cluster node (${dataDir.replaceAll("%", "%%")})
Wants=network-online.target
After=network-online.target

[Service]
${execStartLine(executable, dataDir)}
Restart=always
RestartSec=2
# A node the cluster removed exits with this, then and after a reboot: restarting only repeats it.
RestartPreventExitStatus=${REMOVED_EXIT_STATUS}
# wireguard-go creates the mesh's TUN device and sets its MTU.
AmbientCapabilities=CAP_NET_ADMIN
LimitNOFILE=1048576
# Only the agent is signalled on stop or restart: workloads keep running and the next agent adopts
# them (lib/workloads/supervisor.ts); it also ends a wireguard-go a killed agent left behind.
KillMode=process

[Install]
WantedBy=multi-user.target
`;
}

/**
 * How a unit file stands for the node of `dataDir`: `not-ours` unless Mill wrote it (its first
 * line) to run this data dir's agent from STABLE_EXECUTABLE (its ExecStart= line); then `current`
 * when it is exactly what this version writes, else `outdated`, with the settings it lacks (a unit
 * written before 16ad544 lacks RestartPreventExitStatus=).
 */
export function unitStanding(
  text: string,
  dataDir: string,
):
  | { readonly kind: "not-ours" | "current" }
  | { readonly kind: "outdated"; readonly lacking: readonly string[] } {
  const lines = text.split("\n");
  if (lines[0] !== UNIT_HEADER || !lines.includes(execStartLine(STABLE_EXECUTABLE, dataDir))) {
    return { kind: "not-ours" };
  }
  const wanted = renderUnit(STABLE_EXECUTABLE, dataDir);
  if (text === wanted) return { kind: "current" };
  const settings = wanted.split("\n").filter((line) => line.includes("=") && !line.startsWith("#"));
  return { kind: "outdated", lacking: settings.filter((line) => !lines.includes(line)) };
}

/**
 * For `mill agent`, the command the unit runs: brings an outdated mill.service of this data dir's
 * node up to date, so that systemd judges the agent's exit by this version's settings (a removed
 * node's exit 3 is then not restarted). It rewrites the file and reloads systemd: a reload while
 * the unit runs changes its settings and leaves the running agent alone (it is a simple service,
 * whose start has finished once the agent runs). Resolves with the line to log, or undefined when
 * there was nothing to do; rejects with a ServiceError that says what to do.
 */
export async function refreshUnit(
  dataDir: string,
  host: ServiceHost = systemHost,
): Promise<string | undefined> {
  if (!host.systemdIsInit() || !host.isRoot()) return undefined;
  const text = await host.readUnit(UNIT_PATH);
  const standing = text === undefined ? undefined : unitStanding(text, dataDir);
  if (standing?.kind !== "outdated") return undefined;
  const lacking = standing.lacking.length > 0 ? ` (it lacked ${standing.lacking.join(", ")})` : "";
  try {
    await host.writeUnit(UNIT_PATH, renderUnit(STABLE_EXECUTABLE, dataDir));
    await host.systemctl(["daemon-reload"]);
  } catch (error) {
    throw new ServiceError(
      `${UNIT_PATH} was written by an older mill${lacking} and could not be brought up to date: ${errorMessage(error)}; fix that and restart the node (systemctl restart ${SERVICE_NAME}), which rewrites it`,
    );
  }
  return `${UNIT_PATH} was written by an older mill${lacking}: rewrote it and reloaded systemd`;
}

/** The operating system, as narrow as the hand-over needs it (tests pass a recording fake). */
export interface ServiceHost {
  /** systemd's own test (sd_booted): it was booted as PID 1 when /run/systemd/system exists. */
  systemdIsInit(): boolean;
  isRoot(): boolean;
  /** This process's executable when it is Mill's single executable; undefined from source. */
  executable(): string | undefined;
  /** Copies `from` to `to` (mode 0755) through a temporary name beside it. */
  installExecutable(from: string, to: string): Promise<void>;
  writeUnit(path: string, text: string): Promise<void>;
  /** The unit file's text; undefined when there is none. */
  readUnit(path: string): Promise<string | undefined>;
  removeFile(path: string): Promise<void>;
  exists(path: string): boolean;
  systemctl(args: readonly string[]): Promise<void>;
  /** SIGTERM, then SIGKILL after a grace period; resolves once the process is gone. */
  stopProcess(pid: number): Promise<void>;
  /** Starts the node of `dataDir` detached again (when systemd could not start it). */
  startDetached(dataDir: string): void;
  /** Whether the node of `dataDir` runs as a process other than `previousPid` and answers. */
  serving(dataDir: string, previousPid: number | undefined): Promise<boolean>;
}

export type HandOver =
  | { readonly kind: "service"; readonly unit: string; readonly executable: string }
  | { readonly kind: "detached"; readonly why: string };

const HANDOVER_TIMEOUT_MS = 30_000;

/** The one line `init`/`join` print after a hand-over. */
export function describeHandOver(outcome: HandOver, dataDir: string): string {
  if (outcome.kind === "service") {
    return `node handed over to systemd: ${outcome.unit} is enabled and running ${outcome.executable}, so it comes back after a reboot`;
  }
  return `${outcome.why}: after a reboot, start the node again with \`mill agent --data-dir ${dataDir}\` (or run that under your own supervisor)`;
}

/** The hand-over and its one line, for `init` and `join` to print. */
export async function keepAcrossReboots(dataDir: string, wanted: boolean): Promise<string> {
  return describeHandOver(await handOverToSystemd(dataDir, wanted), dataDir);
}

/**
 * After `init` or `join` left the node of `dataDir` running detached: makes systemd run it (when
 * wanted and possible) and says what happened. A failure before the hand-over leaves the detached
 * node running and no unit behind; a failed start under systemd restarts it detached.
 */
export async function handOverToSystemd(
  dataDir: string,
  wanted: boolean,
  host: ServiceHost = systemHost,
): Promise<HandOver> {
  if (!wanted) return { kind: "detached", why: "no service installed (--no-service)" };
  if (!host.systemdIsInit()) return { kind: "detached", why: "PID 1 is not systemd here" };
  if (!host.isRoot()) return { kind: "detached", why: "not root, so no systemd service installed" };
  const current = host.executable();
  if (!current) {
    return { kind: "detached", why: "running from source, so no systemd service installed" };
  }
  if (current !== STABLE_EXECUTABLE) await host.installExecutable(current, STABLE_EXECUTABLE);
  await host.writeUnit(UNIT_PATH, renderUnit(STABLE_EXECUTABLE, dataDir));
  try {
    await host.systemctl(["daemon-reload"]);
    await host.systemctl(["enable", SERVICE_NAME]);
  } catch (error) {
    await host.removeFile(UNIT_PATH);
    await host.systemctl(["daemon-reload"]).catch(() => {});
    throw error;
  }
  const detached = runningPid(dataDir);
  if (detached !== undefined) await host.stopProcess(detached);
  try {
    await host.systemctl(["start", SERVICE_NAME]);
  } catch (error) {
    host.startDetached(dataDir);
    throw new ServiceError(
      `${errorMessage(error)}; the node runs detached again (see journalctl -u ${SERVICE_NAME})`,
    );
  }
  await pollUntil(
    () => host.serving(dataDir, detached),
    HANDOVER_TIMEOUT_MS,
    () =>
      new ServiceError(
        `${SERVICE_NAME} started but the node did not answer within ${HANDOVER_TIMEOUT_MS / 1000} s; see journalctl -u ${SERVICE_NAME}`,
      ),
    100,
  );
  return { kind: "service", unit: UNIT_PATH, executable: STABLE_EXECUTABLE };
}

/** For `mill leave`: stops and disables mill.service and removes its unit (absent: nothing to do). */
export async function removeService(host: ServiceHost = systemHost): Promise<boolean> {
  if (!host.systemdIsInit() || !host.exists(UNIT_PATH)) return false;
  await host.systemctl(["disable", "--now", SERVICE_NAME]);
  await host.removeFile(UNIT_PATH);
  await host.systemctl(["daemon-reload"]);
  return true;
}

function isDirectory(path: string): boolean {
  try {
    return lstatSync(path).isDirectory();
  } catch {
    return false;
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

export const systemHost: ServiceHost = {
  systemdIsInit: () => isDirectory("/run/systemd/system"),
  isRoot: () => process.getuid?.() === 0,
  executable: () => (embeddedVersions() ? realpathSync(process.execPath) : undefined),
  async installExecutable(from, to) {
    const staged = join(dirname(to), `.mill.${process.pid}`);
    try {
      await copyFile(from, staged);
      await chmod(staged, 0o755);
      // A rename, not a copy over it: a running /usr/local/bin/mill keeps its old file.
      await rename(staged, to);
    } catch (error) {
      await rm(staged, { force: true });
      throw new ServiceError(`cannot install ${to}: ${errorMessage(error)}`);
    }
  },
  async writeUnit(path, text) {
    const staged = `${path}.${process.pid}`;
    await writeFile(staged, text, { mode: 0o644 });
    await rename(staged, path);
  },
  readUnit: (path) =>
    readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return undefined;
      throw error;
    }),
  removeFile: (path) => rm(path, { force: true }),
  exists: existsSync,
  startDetached: (dataDir) => {
    spawnDetached(dataDir);
  },
  systemctl: (args) =>
    new Promise((resolve, reject) =>
      execFile("systemctl", [...args], { timeout: 60_000 }, (error, _stdout, stderr) =>
        error
          ? reject(
              new ServiceError(
                `systemctl ${args.join(" ")} failed: ${stderr.trim().split("\n").at(-1) || error.message}`,
              ),
            )
          : resolve(),
      ),
    ),
  async stopProcess(pid) {
    const gone = () => !processExists(pid);
    signal(pid, "SIGTERM");
    try {
      await pollUntil(gone, 15_000, () => new ServiceError(`pid ${pid} ignored SIGTERM`));
    } catch {
      signal(pid, "SIGKILL");
      await pollUntil(gone, 5_000, () => new ServiceError(`pid ${pid} does not exit`));
    }
  },
  async serving(dataDir, previousPid) {
    const pid = runningPid(dataDir);
    if (pid === undefined || pid === previousPid) return false;
    const config = await loadConfig(dataDir);
    const token = parseToken(await loadToken(dataDir));
    return callApi(
      { endpoint: { host: config.advertise, port: config.apiPort }, token, timeoutMs: 2000 },
      "GET",
      "/v1/status",
    ).then(
      () => true,
      () => false,
    );
  },
};
