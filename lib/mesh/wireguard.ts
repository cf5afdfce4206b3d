/**
 * Supervisor of the userspace WireGuard process (wireguard-go) for one interface: start it, wait for
 * its UAPI socket, apply the desired config and address, restart it with backoff when it dies.
 * Owns: that one child process. Must not touch: other processes, files it did not create (it
 * removes nothing; wireguard-go cleans its own socket and TUN device).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { unlink } from "node:fs/promises";
import process from "node:process";
import { setTimeout as delay } from "node:timers/promises";
import { doublingDelays, RestartBackoff, type RestartPolicy } from "../shared/backoff.ts";
import { errorMessage } from "../shared/errors.ts";
import { pollUntil } from "../shared/poll.ts";
import { SerialQueue } from "../shared/serial.ts";
import { configureInterface, tunOffloads } from "./netif.ts";
import { FIX } from "./preflight.ts";
import {
  DEFAULT_SOCKET_DIR,
  type DeviceConfig,
  type DeviceState,
  renderSetRequest,
  UapiClient,
  uapiSocketPath,
} from "./uapi.ts";

/** Restarts wait 0.2 s, doubling up to 10 s; a process that ran 30 s starts over at 0.2 s. */
export const WIREGUARD_RESTART_POLICY: RestartPolicy = {
  delaysMs: doublingDelays(200, 10_000),
  stableMs: 30_000,
};

export type SupervisorEvent =
  | { readonly type: "started"; readonly pid: number }
  | {
      readonly type: "exited";
      readonly pid: number;
      readonly code: number | null;
      readonly signal: string | null;
      readonly output: string;
    }
  | { readonly type: "restarting"; readonly delayMs: number }
  | { readonly type: "restart-failed"; readonly error: string }
  | { readonly type: "no-offloads"; readonly pid: number; readonly why: string };

export interface WireguardOptions {
  readonly iface: string;
  readonly wgBinary: string;
  /** Interface address, "10.99.0.7/16". */
  readonly address: string;
  readonly mtu?: number;
  /** mill-netif; `ip` is used without it. */
  readonly netifBinary?: string;
  /** The config applied at start and re-applied after every restart until apply() replaces it. */
  readonly config: DeviceConfig;
  readonly readyTimeoutMs?: number;
  readonly stopGraceMs?: number;
  readonly restartPolicy?: RestartPolicy;
  readonly onEvent?: (event: SupervisorEvent) => void;
}

export interface WireguardSupervisor {
  /** The running wireguard-go's pid; undefined while it is down. */
  readonly pid: number | undefined;
  readonly uapi: UapiClient;
  /** Replaces the desired config and applies it; kept for restarts even when applying fails. */
  apply(config: DeviceConfig): Promise<DeviceState>;
  stop(): Promise<void>;
}

/** wireguard-go's known start-up failures as one line with the fix. */
export function explainStartFailure(iface: string, output: string, code: number | null): string {
  const errorLine =
    output
      .split("\n")
      .reverse()
      .find((line) => line.includes("ERROR")) ??
    output.trim().split("\n").at(-1) ??
    "";
  const why = `wireguard-go could not start ${iface}`;
  if (/operation not permitted/i.test(errorLine))
    return `${why}: CAP_NET_ADMIN is missing; ${FIX.capability}`;
  if (/\/dev\/net\/tun does not exist/.test(errorLine))
    return `${why}: /dev/net/tun does not exist; ${FIX.tunMissing}`;
  if (/device or resource busy|unix socket in use/.test(errorLine))
    return `${why}: the interface name is in use; ${FIX.nameInUse}`;
  if (/UAPI listen error/.test(errorLine)) {
    return `${why}: it cannot create its UAPI socket in ${DEFAULT_SOCKET_DIR}; ${FIX.socketDir(DEFAULT_SOCKET_DIR)}`;
  }
  return `${why}: it exited with code ${code} (${errorLine.trim() || "no output"})`;
}

/** The last few lines of a child's output, kept bounded while the pipe is drained. */
class OutputTail {
  private text = "";
  append(chunk: string): void {
    this.text = (this.text + chunk).slice(-4096);
  }
  toString(): string {
    return this.text;
  }
}

export async function startWireguard(options: WireguardOptions): Promise<WireguardSupervisor> {
  const supervisor = new WireguardProcess(options);
  await supervisor.launch();
  return supervisor;
}

class WireguardProcess implements WireguardSupervisor {
  readonly uapi: UapiClient;
  private desired: DeviceConfig;
  private child: ChildProcess | undefined;
  private running = false;
  private stopping = false;
  private readonly backoff: RestartBackoff;
  private startedAt = 0;
  /** Every UAPI set and address change runs after the previous one, so a restart never reorders them. */
  private readonly uapiSteps = new SerialQueue();
  private readonly stopWakeup = new AbortController();
  private readonly killOnExit = () => this.child?.kill("SIGKILL");

  constructor(private readonly options: WireguardOptions) {
    this.uapi = new UapiClient(uapiSocketPath(options.iface));
    this.desired = options.config;
    this.backoff = new RestartBackoff(options.restartPolicy ?? WIREGUARD_RESTART_POLICY);
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  apply(config: DeviceConfig): Promise<DeviceState> {
    renderSetRequest(config);
    this.desired = config;
    return this.uapiSteps.run(() => {
      if (!this.running) {
        throw new Error(
          `wireguard-go for ${this.options.iface} is down; the config is kept and applied when it restarts`,
        );
      }
      return this.uapi.set(this.desired);
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.running = false;
    this.stopWakeup.abort();
    process.off("exit", this.killOnExit);
    const child = this.child;
    if (child === undefined) return;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const endGrace = new AbortController();
      const grace = delay(this.options.stopGraceMs ?? 3000, "timeout", { signal: endGrace.signal });
      if ((await Promise.race([exited, grace.catch(() => undefined)])) === "timeout") {
        child.kill("SIGKILL");
        await exited;
      }
      endGrace.abort();
    }
    // Only a killed wireguard-go leaves its socket behind; it was our child's, so tidy it if nothing answers.
    if (!(await this.uapi.ping())) await unlink(this.uapi.socketPath).catch(() => undefined);
  }

  /** Starts wireguard-go, waits for its socket, applies the desired config and the address. */
  async launch(): Promise<void> {
    const { iface, wgBinary } = this.options;
    const output = new OutputTail();
    const child = spawn(wgBinary, ["-f", iface], {
      env: { ...process.env, WG_PROCESS_FOREGROUND: "1", LOG_LEVEL: "error" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    process.off("exit", this.killOnExit);
    process.on("exit", this.killOnExit);
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => output.append(chunk));
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => output.append(chunk));
    const spawnError = new Promise<Error>((resolve) => child.once("error", resolve));
    // A promise rather than a listener added later, so an exit during start-up is never missed.
    const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      child.once("exit", (code, signal) => resolve({ code, signal })),
    );
    let failure: string | undefined;
    void spawnError.then((error: NodeJS.ErrnoException) => {
      failure =
        error.code === "ENOENT" || error.code === "EACCES"
          ? `wireguard-go binary ${wgBinary} cannot be run (${error.code}): set MILL_WG_BINARY to a working wireguard-go`
          : `wireguard-go could not be spawned: ${error.message}`;
    });
    void exit.then(({ code }) => {
      failure ??= explainStartFailure(iface, output.toString(), code);
    });
    try {
      await this.waitForSocket(() => failure);
      await this.uapiSteps.run(async () => {
        await this.uapi.set(this.desired);
        await configureInterface({
          iface,
          address: this.options.address,
          mtu: this.options.mtu,
          helper: this.options.netifBinary,
        });
      });
    } catch (error) {
      child.kill("SIGKILL");
      throw error;
    }
    if (this.stopping) return;
    if ((await tunOffloads(iface)) === false) {
      this.options.onEvent?.({
        type: "no-offloads",
        pid: child.pid!,
        why: `${wgBinary} runs ${iface} without TUN segmentation offloads (a wireguard-go older than v0.0.20230223), which makes the mesh several times slower; run the wireguard-go Mill embeds (unset MILL_WG_BINARY) or one from v0.0.20230223 on`,
      });
    }
    this.running = true;
    this.startedAt = Date.now();
    this.options.onEvent?.({ type: "started", pid: child.pid! });
    void exit.then(({ code, signal }) => {
      if (this.child !== child || this.stopping) return;
      this.running = false;
      this.options.onEvent?.({
        type: "exited",
        pid: child.pid!,
        code,
        signal,
        output: output.toString(),
      });
      void this.restart(Date.now() - this.startedAt);
    });
  }

  private async waitForSocket(failure: () => string | undefined): Promise<void> {
    const timeoutMs = this.options.readyTimeoutMs ?? 5000;
    await pollUntil(
      () => {
        const reason = failure();
        if (reason !== undefined) throw new Error(reason);
        return this.uapi.ping();
      },
      timeoutMs,
      () =>
        new Error(
          `wireguard-go did not answer on ${this.uapi.socketPath} within ${timeoutMs} ms; is ${DEFAULT_SOCKET_DIR} writable?`,
        ),
      10,
    );
  }

  private async restart(uptimeMs: number): Promise<void> {
    let uptime = uptimeMs;
    while (!this.stopping) {
      const delayMs = this.backoff.next(uptime);
      uptime = 0;
      this.options.onEvent?.({ type: "restarting", delayMs });
      await delay(delayMs, undefined, { signal: this.stopWakeup.signal }).catch(() => undefined);
      if (this.stopping) return;
      try {
        await this.launch();
        return;
      } catch (error) {
        this.options.onEvent?.({ type: "restart-failed", error: errorMessage(error) });
      }
    }
  }
}
