/**
 * The `mill` command line as an operator meets it, run in-process through runCli with the real
 * command tree: exit codes, what goes to stdout and stderr, colour, --json errors and the hints
 * for the usual mistakes. Nothing here starts a node: the data dirs are written by hand.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpsServer, type Server } from "node:https";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { runCli } from "../../../lib/cli/dispatch.ts";
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE } from "../../../lib/cli/errors.ts";
import { mill } from "../../../lib/cli/index.ts";
import { colorOn, formatLog } from "../../../lib/cli/output.ts";
import { fingerprintOfPem } from "../../../lib/identity/fingerprint.ts";
import { createToken } from "../../../lib/identity/token.ts";
import { createClusterIdentity } from "../../../lib/identity/x509.ts";

interface Outcome {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `mill ARGS` in this process, capturing both streams; `tty` makes them look like terminals. */
async function mill_(argv: string[], options: { tty?: boolean } = {}): Promise<Outcome> {
  let stdout = "";
  let stderr = "";
  const out = process.stdout.write;
  const err = process.stderr.write;
  const ttys = [process.stdout.isTTY, process.stderr.isTTY];
  // The test runner reports through stdout too, in binary frames: those pass through.
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
    if (typeof chunk !== "string") return out.call(process.stdout, chunk, ...rest);
    stdout += chunk;
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
    if (typeof chunk !== "string") return err.call(process.stderr, chunk, ...rest);
    stderr += chunk;
    return true;
  }) as typeof process.stderr.write;
  process.stdout.isTTY = options.tty ?? false;
  process.stderr.isTTY = options.tty ?? false;
  try {
    const code = await runCli(mill, argv);
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
    [process.stdout.isTTY, process.stderr.isTTY] = ttys as [boolean, boolean];
  }
}

const ESCAPE = "\u001B[";

async function closedPort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, "close");
  return port;
}

/** A data dir as a node leaves it (node.json, token), its node stopped (no live mill.pid). */
async function stoppedNodeDir(root: string, token: string, port: number): Promise<string> {
  const dir = join(root, `node-${port}`);
  await mkdir(dir, { mode: 0o700 });
  const config = { version: 1, nodeId: 1, name: "node-1", advertise: "127.0.0.1", apiPort: port };
  await writeFile(join(dir, "node.json"), JSON.stringify(config), { mode: 0o600 });
  await writeFile(join(dir, "token"), `${token}\n`, { mode: 0o600 });
  return dir;
}

describe("mill command line", () => {
  const cluster = createClusterIdentity();
  const token = createToken(fingerprintOfPem(cluster.certPem));
  let root = "";
  let stopped = "";
  let impostor: Server;
  let impostorPort = 0;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "mill-cli-"));
    stopped = await stoppedNodeDir(root, token, await closedPort());
    const other = createClusterIdentity();
    impostor = createHttpsServer({ key: other.keyPem, cert: other.certPem }, (_req, res) =>
      res.end("{}"),
    );
    impostor.listen(0, "127.0.0.1");
    await once(impostor, "listening");
    impostorPort = (impostor.address() as AddressInfo).port;
  });
  after(async () => {
    impostor.close();
    await rm(root, { recursive: true, force: true });
  });

  describe("extra or unknown words exit 2 with the usage line, and run nothing", () => {
    const cases: [string[], RegExp][] = [
      [
        ["nodes", "rm", "node-3"],
        /^error: unexpected argument "rm"\nusage: mill nodes \[OPTIONS\]/,
      ],
      [["status", "extra", "junk"], /^error: unexpected argument "extra"\nusage: mill status /],
      [["stop", "a", "b"], /^error: unexpected argument "b"\nusage: mill stop \[OPTIONS\] <NAME>/],
      [["token", "rotate", "x"], /^error: unexpected argument "x"\nusage: mill token rotate /],
      [["token", "--data-dir", "x"], /^error: unknown flag "--data-dir"\nusage: mill token /],
      [["token", "shwo"], /^error: unknown command "shwo"\nhint: .*\nusage: mill token /],
      [["stauts"], /^error: unknown command "stauts"\n/],
      [["status", "--adress", "x"], /^error: unknown flag "--adress"\nusage: mill status /],
    ];
    test("mill token", async () => {
      const outcome = await mill_(["token"]);
      assert.equal(outcome.code, EXIT_USAGE);
      assert.match(
        outcome.stderr,
        /^error: missing command: mill token needs one of show, rotate\n/,
      );
    });
    for (const [argv, stderr] of cases) {
      test(`mill ${argv.join(" ")}`, async () => {
        // The data dir holds a stopped node: were the words accepted, the command would fail
        // with exit 1 instead.
        const outcome = await mill_([...argv, "--data-dir", stopped]);
        assert.equal(outcome.code, EXIT_USAGE);
        assert.match(outcome.stderr, stderr);
        assert.equal(outcome.stdout, "");
      });
    }
  });

  describe("a flag without its value is named", () => {
    const cases: [string[], string][] = [
      [["status", "--address"], "--address needs a value: --address HOST:PORT"],
      [["status", "--address", "--json"], "--address needs a value: --address HOST:PORT"],
      [["status", "--address="], "--address needs a value: --address HOST:PORT"],
      [["nodes", "--token"], "--token needs a value: --token TOKEN"],
      [["init", "--mesh"], "--mesh needs a value: --mesh wireguard|none"],
    ];
    for (const [argv, line] of cases) {
      test(`mill ${argv.join(" ")}`, async () => {
        const outcome = await mill_(argv);
        assert.equal(outcome.code, EXIT_USAGE);
        const first = outcome.stderr.split("\n")[0]!;
        const error = argv.includes("--json")
          ? (JSON.parse(first) as { error: string }).error
          : first.replace(/^error: /, "");
        assert.equal(error, line);
      });
    }
  });

  describe("colour only on a terminal, never with NO_COLOR", () => {
    test("help and usage errors written to a pipe carry no escape codes", async () => {
      const help = await mill_(["--help"]);
      assert.equal(help.code, EXIT_OK);
      assert.match(help.stdout, /USAGE mill /);
      assert.ok(!help.stdout.includes(ESCAPE));
      const sub = await mill_(["status", "--help"]);
      assert.ok(!sub.stdout.includes(ESCAPE));
      const usage = await mill_(["status", "junk"]);
      assert.ok(!usage.stderr.includes(ESCAPE));
    });

    test("on a terminal with NO_COLOR set, no escape codes either", async () => {
      process.env.NO_COLOR = "1";
      try {
        const help = await mill_(["--help"], { tty: true });
        const usage = await mill_(["status", "junk"], { tty: true });
        assert.ok(!help.stdout.includes(ESCAPE));
        assert.ok(!usage.stderr.includes(ESCAPE));
      } finally {
        delete process.env.NO_COLOR;
      }
    });

    test("colour is decided per stream: a terminal without NO_COLOR or TERM=dumb", () => {
      assert.equal(colorOn({ isTTY: true, write: () => true }, {}), true);
      assert.equal(colorOn({ isTTY: false, write: () => true }, {}), false);
      assert.equal(colorOn({ isTTY: true, write: () => true }, { NO_COLOR: "1" }), false);
      assert.equal(colorOn({ isTTY: true, write: () => true }, { NO_COLOR: "yes" }), false);
      assert.equal(colorOn({ isTTY: true, write: () => true }, { TERM: "dumb" }), false);
      const line = { type: "success" as const, tag: "", args: ["done"] };
      assert.ok(formatLog(line, true).includes(ESCAPE));
      assert.equal(formatLog(line, false), "✔ done\n");
    });
  });

  describe("an operational error is one line and its hint, on stderr, without usage", () => {
    test("a stopped local node: exit 1, named, with the hint to start it", async () => {
      const outcome = await mill_(["status", "--data-dir", stopped]);
      assert.equal(outcome.code, EXIT_FAILED);
      assert.equal(outcome.stdout, "");
      const lines = outcome.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 2, outcome.stderr);
      assert.match(
        lines[0]!,
        new RegExp(
          `^error: the node in ${stopped} is not running: cannot reach 127\\.0\\.0\\.1:\\d+ \\(connect ECONNREFUSED`,
        ),
      );
      assert.match(
        lines[1]!,
        new RegExp(`^hint: start it with .*\`mill agent --data-dir ${stopped}\``),
      );
    });

    test("init on a data dir that holds a node says it is already initialised, and where", async () => {
      const outcome = await mill_([
        "init",
        "--advertise",
        "127.0.0.1",
        "--mesh",
        "none",
        "--no-service",
        "--data-dir",
        stopped,
      ]);
      assert.equal(outcome.code, EXIT_FAILED);
      assert.equal(
        outcome.stderr.split("\n")[0],
        `error: already initialised: ${stopped} holds a Mill node; start it with \`mill agent --data-dir ${stopped}\`, or pick another --data-dir`,
      );
    });
  });

  describe("token typos are named as token typos", () => {
    test("a malformed token is a usage error naming what is wrong, with where to get it", async () => {
      const outcome = await mill_(["status", "--address", "127.0.0.1:1", "--token", `${token}x`]);
      assert.equal(outcome.code, EXIT_USAGE);
      assert.match(outcome.stderr, /^error: invalid token: its fingerprint part has 33 characters/);
      assert.match(outcome.stderr, /\nhint: copy the token again: `mill token show`/);
    });

    test("a typo in the fingerprint part is named as one, not as a wrong address", async () => {
      const [head, fingerprint] = token.split(".") as [string, string];
      const typo = `${head}.${fingerprint[0] === "a" ? "b" : "a"}${fingerprint.slice(1)}`;
      const outcome = await mill_([
        "status",
        "--address",
        `127.0.0.1:${impostorPort}`,
        "--token",
        typo,
      ]);
      assert.equal(outcome.code, EXIT_FAILED);
      assert.match(outcome.stderr, /^error: the server at 127\.0\.0\.1:\d+ is not the cluster/);
      assert.match(outcome.stderr, /\nhint: check the token for a typo in its fingerprint part/);
    });
  });

  describe("with --json, errors are JSON on stderr with the same exit codes", () => {
    test("an operational error", async () => {
      const outcome = await mill_(["status", "--json", "--data-dir", stopped]);
      assert.equal(outcome.code, EXIT_FAILED);
      assert.equal(outcome.stdout, "");
      const body = JSON.parse(outcome.stderr) as { error: string; hint: string };
      assert.match(body.error, /is not running/);
      assert.match(body.hint, /mill agent --data-dir/);
    });

    test("a usage error", async () => {
      const outcome = await mill_(["nodes", "--json", "rm", "node-3"]);
      assert.equal(outcome.code, EXIT_USAGE);
      assert.deepEqual(JSON.parse(outcome.stderr), {
        error: 'unexpected argument "rm"',
        hint: "usage: mill nodes [OPTIONS] (`mill nodes --help` lists the options)",
      });
    });
  });

  describe("mill token show", () => {
    test("prints the token this node keeps", async () => {
      const text = await mill_(["token", "show", "--data-dir", stopped]);
      assert.deepEqual(text, { code: EXIT_OK, stdout: `Token: ${token}\n`, stderr: "" });
      const json = await mill_(["token", "show", "--json", "--data-dir", stopped]);
      assert.deepEqual(JSON.parse(json.stdout), { token });
    });

    test("on a host without a node, exit 1 saying so", async () => {
      const outcome = await mill_(["token", "show", "--data-dir", join(root, "none")]);
      assert.equal(outcome.code, EXIT_FAILED);
      assert.match(outcome.stderr, /^error: .*none holds no Mill node, so no token\nhint: /);
    });
  });
});
