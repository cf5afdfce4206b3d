#!/usr/bin/env node
/** Mill's entry point: wires the command line and nothing else. */
import { runCli } from "./lib/cli/dispatch.ts";
import { mill } from "./lib/cli/index.ts";

// No top-level await: the release bundle is CommonJS (Node's single-executable format needs it).
runCli(mill, process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
