import assert from "node:assert/strict";
import { test } from "node:test";
import { defineCommand } from "citty";
import { runCli } from "../../../lib/cli/dispatch.ts";
import {
  EXIT_FAILED,
  EXIT_OK,
  EXIT_REMOVED,
  EXIT_USAGE,
  OperationError,
} from "../../../lib/cli/errors.ts";
import { NodeRemovedError } from "../../../lib/node/removal.ts";

function fixture() {
  const calls: Record<string, unknown>[] = [];
  const greet = defineCommand({
    meta: { name: "greet", description: "says hello" },
    args: {
      name: { type: "positional", description: "who", required: true },
      loud: { type: "boolean", description: "shout" },
      dataDir: { type: "string", description: "a dir" },
    },
    run({ args }) {
      calls.push({ name: args.name, loud: args.loud, dataDir: args.dataDir });
    },
  });
  const fail = defineCommand({
    meta: { name: "fail", description: "always fails" },
    run() {
      throw new OperationError("it broke", "try again");
    },
  });
  const removed = defineCommand({
    meta: { name: "removed", description: "an agent whose node was removed" },
    run() {
      throw new NodeRemovedError("this node was removed from the cluster");
    },
  });
  const root = defineCommand({
    meta: { name: "t", version: "9.9.9", description: "test" },
    subCommands: { greet, fail, removed },
  });
  return { root, calls };
}

// Output goes to the real streams; silence them so the test report stays readable.
async function quietly<T>(work: () => Promise<T>): Promise<T> {
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  process.stdout.write = () => true;
  process.stderr.write = () => true;
  try {
    return await work();
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}

test("a known command runs with its parsed arguments and exits 0", async () => {
  const { root, calls } = fixture();
  const code = await quietly(() => runCli(root, ["greet", "ada", "--loud", "--data-dir", "/x"]));
  assert.equal(code, EXIT_OK);
  assert.deepEqual(calls, [{ name: "ada", loud: true, dataDir: "/x" }]);
});

test("a removed node's failure exits 3, apart from any other failure (1)", async () => {
  const { root } = fixture();
  assert.equal(await quietly(() => runCli(root, ["removed"])), EXIT_REMOVED);
  assert.equal(EXIT_REMOVED, 3);
  assert.equal(await quietly(() => runCli(root, ["fail"])), EXIT_FAILED);
});

test("an unknown command is a usage error (exit 2) and runs nothing", async () => {
  const { root, calls } = fixture();
  assert.equal(await quietly(() => runCli(root, ["gret", "ada"])), EXIT_USAGE);
  assert.equal(calls.length, 0);
});

test("an unknown flag is a usage error (exit 2) and runs nothing", async () => {
  const { root, calls } = fixture();
  assert.equal(await quietly(() => runCli(root, ["greet", "ada", "--lound"])), EXIT_USAGE);
  assert.equal(calls.length, 0);
});

test("a missing required positional is a usage error", async () => {
  const { root, calls } = fixture();
  assert.equal(await quietly(() => runCli(root, ["greet"])), EXIT_USAGE);
  assert.equal(calls.length, 0);
});

test("a failed operation exits 1", async () => {
  const { root } = fixture();
  assert.equal(await quietly(() => runCli(root, ["fail"])), EXIT_FAILED);
});

test("--help on a subcommand exits 0 without running it", async () => {
  const { root, calls } = fixture();
  assert.equal(await quietly(() => runCli(root, ["greet", "--help"])), EXIT_OK);
  assert.equal(calls.length, 0);
});

test("a negative number is a flag's value, not an unknown flag", async () => {
  const { root, calls } = fixture();
  assert.equal(await quietly(() => runCli(root, ["greet", "ada", "--data-dir", "-1"])), EXIT_OK);
  assert.deepEqual(calls, [{ name: "ada", loud: undefined, dataDir: "-1" }]);
});
