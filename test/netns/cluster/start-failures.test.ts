/**
 * Joins and agents that cannot work, with the real executable and the default WireGuard mesh in
 * network namespaces: a join with an address not on its host, with another node's address, with a
 * busy public, Raft or WireGuard (UDP, IPv4 or IPv6) port, and a join whose node cannot start
 * after it registered; `init` and `join`, in the foreground or detached, stopped by SIGTERM or
 * SIGINT while their node's wireguard-go starts (in a data dir they create, or an empty one the
 * operator made); an agent that cannot bind; an agent stopped by SIGTERM while its wireguard-go starts.
 * Each fails within the command's deadline and leaves its host as it was: no process, no
 * interface, no UAPI socket, no data dir it created (an empty one it found is left empty), and no
 * record in the cluster.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFile } from "node:child_process";
import { once } from "node:events";
import { chmodSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { eventually, FAST_HEALTH } from "../../e2e/harness.ts";
import { FaultCluster } from "../faults/cluster.ts";
import { notRootReason } from "../harness.ts";

const repo = new URL("../../..", import.meta.url).pathname;
const mill = join(repo, "dist", "mill");
const run = promisify(execFile);

/** One-line programs that hold a port in a namespace and print "ready" once they do. */
const holders = {
  tcp: (ip: string, port: number) =>
    `require("node:net").createServer().listen(${port}, "${ip}", () => console.log("ready"))`,
  udp4: (ip: string, port: number) =>
    `require("node:dgram").createSocket("udp4").bind(${port}, "${ip}", () => console.log("ready"))`,
  udp6: (_ip: string, port: number) =>
    `require("node:dgram").createSocket({ type: "udp6", ipv6Only: true }).bind(${port}, "::", () => console.log("ready"))`,
};

describe("failed joins and agents leave nothing behind, with the WireGuard mesh", {
  skip: notRootReason,
}, () => {
  let cluster: FaultCluster;
  const iface = (name: string) => `mf${cluster.net.runId}${cluster.host(name).index}`;

  before(async () => {
    cluster = await FaultCluster.create(3, {});
    await cluster.form(["node-1", "node-2"]);
  });
  after(async () => {
    await cluster?.cleanup(false);
  });

  /** Starts `args` under node in `name`'s namespace; resolves once it prints `line`. */
  async function started(name: string, args: string[], line: string): Promise<ChildProcess> {
    const child = cluster.host(name).spawn(process.execPath, args, { cwd: repo });
    const lines = createInterface({ input: child.stdout! });
    const exited = once(child, "exit").then(([code]) => {
      throw new Error(`${args.join(" ")} in ${name} exited ${code} before it printed ${line}`);
    });
    await Promise.race([exited, once(lines, "line")]);
    return child;
  }

  /** Ends processes this test started and waits until they are gone. */
  async function end(children: readonly ChildProcess[]): Promise<void> {
    for (const child of children) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      const exited = once(child, "exit");
      child.kill("SIGKILL");
      await exited;
    }
  }

  /** `name`'s host is as before: no process, no interface but lo and eth0, no UAPI socket. */
  async function nothingLeftOn(name: string): Promise<void> {
    const pids = (await run("ip", ["netns", "pids", cluster.host(name).name])).stdout.trim();
    assert.equal(pids, "", `no process is left in ${name}'s namespace`);
    const links = await cluster.host(name).run("ip", ["-o", "link", "show"]);
    const names = links
      .trim()
      .split("\n")
      .map((entry) => entry.split(": ")[1]!.split("@")[0]);
    assert.deepEqual(names.sort(), ["eth0", "lo"], `no interface is left on ${name}`);
    const socket = join("/var/run/wireguard", `${iface(name)}.sock`);
    assert.equal(existsSync(socket), false, `no UAPI socket ${socket} is left`);
  }

  async function registeredNames(): Promise<string[]> {
    return (await cluster.status("node-1")).nodes.map((node) => node.name);
  }

  /** The flags of node-3's own `init` or `join`, advertising `advertise`. */
  function node3Flags(advertise: string): string[] {
    return [
      "--advertise",
      advertise,
      "--name",
      "node-3",
      "--data-dir",
      cluster.dataDir("node-3"),
      "--mesh-interface",
      iface("node-3"),
      "--no-service",
    ];
  }

  /** `mill join` of node-3 through `via`, advertising `advertise`, as an operator types it. */
  function joinNode3(advertise: string, via = `${cluster.host("node-1").underlay}:4400`) {
    return cluster.mill(
      "node-3",
      ["join", via, "--token", cluster.token("node-1"), ...node3Flags(advertise)],
      // Fails fast: a join still running after 15 s is killed, and fails the test.
      15_000,
    );
  }

  /** The join failed with one error line matching `reason` and left nothing anywhere. */
  async function failedCleanly(
    result: { code: number; stderr: string },
    reason: RegExp,
  ): Promise<void> {
    assert.equal(result.code, 1, result.stderr);
    const errors = result.stderr.split("\n").filter((line) => line.startsWith("error: "));
    assert.equal(errors.length, 1, result.stderr);
    assert.match(errors[0]!, reason);
    assert.equal(existsSync(cluster.dataDir("node-3")), false, "no data dir is left");
    await nothingLeftOn("node-3");
    assert.deepEqual(await registeredNames(), ["node-1", "node-2"], "no record is left");
  }

  test("a join with an address not on its host, or with another node's address", async () => {
    const subnet = cluster.host("node-3").underlay.split(".").slice(0, 3).join(".");
    for (const advertise of [`${subnet}.77`, cluster.host("node-2").underlay]) {
      const escaped = advertise.replaceAll(".", "\\.");
      await failedCleanly(
        await joinNode3(advertise),
        new RegExp(`^error: --advertise ${escaped} is not an address of this host`),
      );
    }
  });

  test("a join with a busy public, Raft or WireGuard port (UDP on IPv4, and on IPv6 only)", async () => {
    const ip = cluster.host("node-3").underlay;
    const cases = [
      ["tcp", 4400, `${ip}:4400`, "--port \\(the public API\\)"],
      ["tcp", 4401, `${ip}:4401`, "--port \\+ 1 \\(Raft\\)"],
      ["udp4", 4400, "0.0.0.0:4400", "--port \\(WireGuard, UDP\\)"],
      ["udp6", 4400, "[::]:4400", "--port \\(WireGuard, UDP\\)"],
    ] as const;
    for (const [kind, port, shown, what] of cases) {
      const holder = await started("node-3", ["-e", holders[kind](ip, port)], "ready");
      try {
        const result = await joinNode3(ip);
        await end([holder]);
        const where = shown.replaceAll(".", "\\.").replace("[", "\\[").replace("]", "\\]");
        await failedCleanly(
          result,
          new RegExp(`^error: ${where} is already in use, and the node needs it for ${what}`),
        );
      } finally {
        await end([holder]);
      }
    }
  });

  test("a join whose node cannot start after it registered withdraws the registration", async () => {
    const ip = cluster.host("node-3").underlay;
    // The joiner's public port is free during its host checks and taken once it has registered:
    // its node starts its mesh and Raft, then cannot serve.
    const relay = await started(
      "node-3",
      [
        "--import",
        "tsx",
        join(repo, "test", "e2e", "relay.ts"),
        `${ip}:5400`,
        `${cluster.host("node-1").underlay}:4400`,
        `${ip}:4400`,
      ],
      "listening",
    );
    try {
      const result = await joinNode3(ip, `${ip}:5400`);
      await end([relay]);
      const id = Number(/registered as node (\d+)/.exec(result.stdout + result.stderr)?.[1]);
      assert.ok(id > 0, `it registered first: ${result.stdout}${result.stderr}`);
      assert.match(
        result.stdout + result.stderr,
        new RegExp(`withdrew its registration as node ${id}`),
      );
      await failedCleanly(
        result,
        new RegExp(
          `^error: the node exited \\(code 1\\) before it was ready: listen EADDRINUSE: address already in use ${ip.replaceAll(".", "\\.")}:4400$`,
        ),
      );
    } finally {
      await end([relay]);
    }
  });

  let held = 0;
  /**
   * Runs `mill ARGS` in `name`'s namespace with a wireguard-go that says it was started, then
   * waits for the test's word to run; sends `signal` once it started, so the command is inside its
   * mesh start-up when the signal comes, and lets the real wireguard-go run after. Resolves with
   * how the command ended and what it printed.
   */
  async function signalledWhileWireguardStarts(
    name: string,
    args: readonly string[],
    signal: NodeJS.Signals = "SIGTERM",
  ) {
    const real = readdirSync("/run/mill").find((file) => file.startsWith("wireguard-go-"));
    assert.ok(real, "the nodes extracted their wireguard-go into /run/mill");
    held += 1;
    const marker = join(cluster.root, `wireguard-started-${held}`);
    const go = join(cluster.root, `wireguard-go-on-${held}`);
    const wrapper = join(cluster.root, `wireguard-go-held-${held}`);
    writeFileSync(
      wrapper,
      `#!/bin/sh\necho "$$" > ${marker}\nwhile [ ! -e ${go} ]; do sleep 0.05; done\nexec /run/mill/${real} "$@"\n`,
    );
    chmodSync(wrapper, 0o755);
    const env = Object.entries({ ...FAST_HEALTH, MILL_WG_BINARY: wrapper }).map(
      ([key, value]) => `${key}=${value}`,
    );
    const child = cluster
      .host(name)
      .spawn("env", ["-i", `PATH=${process.env.PATH}`, ...env, mill, ...args]);
    let output = "";
    child.stdout!.on("data", (chunk) => {
      output += chunk;
    });
    let stderr = "";
    child.stderr!.on("data", (chunk) => {
      stderr += chunk;
    });
    const closed = once(child, "close");
    try {
      await eventually("the command to start wireguard-go", async () =>
        existsSync(marker) ? true : undefined,
      );
      child.kill(signal);
      writeFileSync(go, "");
      const [code, diedOf] = await closed;
      return { code, signal: diedOf, output: output + stderr, stderr };
    } finally {
      writeFileSync(go, "");
      await end([child]);
    }
  }

  test("SIGTERM or SIGINT during init or join (foreground or detached) while wireguard-go starts: nothing is left, the registration withdrawn", async () => {
    const own = node3Flags(cluster.host("node-3").underlay);
    const via = `${cluster.host("node-1").underlay}:4400`;
    const dataDir = cluster.dataDir("node-3");
    // [the command, the signal, whether the operator made its data dir first (it is left empty)]
    const cases: [string[], NodeJS.Signals, boolean][] = [
      [["init", "--foreground"], "SIGINT", false],
      [["init"], "SIGTERM", true],
      [["join", via, "--token", cluster.token("node-1"), "--foreground"], "SIGTERM", true],
      [["join", via, "--token", cluster.token("node-1")], "SIGINT", false],
    ];
    for (const [command, signal, premade] of cases) {
      if (premade) mkdirSync(dataDir, { mode: 0o700 });
      const what = `${command[0]} ${command.includes("--foreground") ? "--foreground" : "(detached)"}, ${signal}${premade ? ", in an empty data dir" : ""}`;
      const ended = await signalledWhileWireguardStarts("node-3", [...command, ...own], signal);
      const shown = `${what}: ${ended.output}`;
      assert.deepEqual(
        [ended.code, ended.signal],
        [1, null],
        `it stopped itself and failed: ${shown}`,
      );
      const errors = ended.stderr.split("\n").filter((line) => line.startsWith("error: "));
      const outcome = command[0] === "init" ? "no cluster was created" : "it did not join";
      assert.equal(errors.length, 1, shown);
      assert.match(
        errors[0]!,
        new RegExp(`^error: stopped by ${signal} .*: ${outcome}, and nothing runs$`),
      );
      if (command[0] === "join") {
        const id = /registered as node (\d+)/.exec(ended.output)?.[1];
        assert.ok(id, `it registered before wireguard-go started: ${shown}`);
        assert.match(ended.output, new RegExp(`withdrew its registration as node ${id}`));
      }
      if (premade) {
        assert.deepEqual(readdirSync(dataDir), [], `the data dir is left empty: ${shown}`);
        rmSync(dataDir, { recursive: true });
      } else assert.equal(existsSync(dataDir), false, `no data dir is left: ${shown}`);
      await nothingLeftOn("node-3");
      assert.deepEqual(await registeredNames(), ["node-1", "node-2"], "no record is left");
    }
  });

  /** Stops node-2's agent (SIGTERM) and waits until it and its wireguard-go are gone. */
  async function stopNode2(): Promise<void> {
    process.kill(cluster.pid("node-2"), "SIGTERM");
    await eventually("node-2 to stop", async () =>
      existsSync(join(cluster.dataDir("node-2"), "mill.pid")) ? undefined : true,
    );
    await eventually("node-2's namespace to be empty", async () => {
      const pids = await run("ip", ["netns", "pids", cluster.host("node-2").name]);
      return pids.stdout.trim() === "" ? true : undefined;
    });
  }

  test("an agent that cannot bind exits 1, stopping its wireguard-go; no interface is left", async () => {
    await stopNode2();
    const ip = cluster.host("node-2").underlay;
    const holder = await started("node-2", ["-e", holders.tcp(ip, 4400)], "ready");
    try {
      const result = await cluster.mill(
        "node-2",
        ["agent", "--data-dir", cluster.dataDir("node-2")],
        20_000,
      );
      await end([holder]);
      assert.equal(result.code, 1, result.stderr);
      assert.match(
        result.stderr,
        new RegExp(`^error: .*EADDRINUSE.*${ip.replaceAll(".", "\\.")}:4400`, "m"),
      );
      assert.equal(existsSync(join(cluster.dataDir("node-2"), "mill.pid")), false);
      await nothingLeftOn("node-2");
    } finally {
      await end([holder]);
    }
  });

  test("SIGTERM while the agent's wireguard-go starts: it stops it, frees the lock and exits 0", async () => {
    if (existsSync(join(cluster.dataDir("node-2"), "mill.pid"))) await stopNode2();
    const ended = await signalledWhileWireguardStarts("node-2", [
      "agent",
      "--data-dir",
      cluster.dataDir("node-2"),
    ]);
    assert.deepEqual(
      [ended.code, ended.signal],
      [0, null],
      `it stopped itself rather than die by the signal: ${ended.output}`,
    );
    assert.equal(existsSync(join(cluster.dataDir("node-2"), "mill.pid")), false);
    await nothingLeftOn("node-2");
  });
});
