/**
 * Runs a citty command tree with Mill's contract: unknown commands, flags and extra arguments and
 * missing values are usage errors (exit 2) that print the usage line, failures print one line and
 * a hint (exit 1; 3 for a removed node's agent), both on stderr (as JSON with --json), `--help` works at every level.
 * Owns: dispatch, exit codes and error printing. Must not touch: what the commands do.
 */
import { stripVTControlCharacters } from "node:util";
import { type ArgDef, type ArgsDef, type CommandDef, renderUsage, runCommand } from "citty";
import { errorMessage } from "../shared/errors.ts";
import { EXIT_OK, EXIT_USAGE, failedExitCode, OperationError, UsageError } from "./errors.ts";
import { forStream, useOutput, writeFailure } from "./output.ts";
import { versionReport } from "./version.ts";

type AnyCommand = CommandDef<ArgsDef>;

async function resolve<T>(value: T | Promise<T> | (() => T | Promise<T>)): Promise<T> {
  return typeof value === "function" ? (value as () => T | Promise<T>)() : value;
}

interface Located {
  command: AnyCommand;
  parent?: AnyCommand;
  /** The words that name it, e.g. ["mill", "token", "rotate"]. */
  path: string[];
  /** The argv left for it. */
  rest: string[];
}

/**
 * Finds the command that argv names, updating `at` as it goes down the tree, so that an unknown
 * subcommand is reported with the usage of the last command found.
 */
async function locate(at: Located): Promise<Located> {
  for (;;) {
    const subCommands = at.command.subCommands ? await resolve(at.command.subCommands) : undefined;
    const first = at.rest[0];
    if (!subCommands || first === undefined || first.startsWith("-")) return at;
    const next = subCommands[first];
    if (!next) {
      throw new UsageError(
        `unknown command "${first}"`,
        `run \`${at.path.join(" ")} --help\` for the list`,
      );
    }
    at.parent = at.command;
    at.command = await resolve(next);
    at.path.push(first);
    at.rest = at.rest.slice(1);
  }
}

/** The argv before `--`: what follows it belongs to the workload's command, not to Mill. */
function ownArgs(argv: readonly string[]): readonly string[] {
  const split = argv.indexOf("--");
  return split < 0 ? argv : argv.slice(0, split);
}

const isFlag = (arg: string) => arg.startsWith("-") && arg !== "-" && !/^-\d/.test(arg);

/**
 * Checks argv against what the command declares, since citty itself accepts anything: unknown
 * flags, flags that take a value but got none, and more positional arguments than declared are
 * usage errors. ("-" alone and negative numbers, as in "--cpu -1", are values, not flags.)
 */
async function checkArgs(command: AnyCommand, argv: readonly string[]): Promise<void> {
  const args = command.args ? await resolve(command.args) : {};
  const defs = new Map<string, ArgDef>([
    ["help", { type: "boolean" }],
    ["h", { type: "boolean" }],
  ]);
  for (const [name, def] of Object.entries(args)) {
    const names = [name, name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)];
    if ("alias" in def) names.push(...[def.alias ?? []].flat());
    for (const each of names) defs.set(each, def);
    if (def.type === "boolean") defs.set(`no-${name}`, def);
  }
  const positionals = Object.values(args).filter((def) => def.type === "positional").length;
  let seen = 0;
  const own = ownArgs(argv);
  for (let i = 0; i < own.length; i++) {
    const arg = own[i]!;
    if (!isFlag(arg)) {
      seen++;
      if (seen > positionals) throw new UsageError(`unexpected argument "${arg}"`);
      continue;
    }
    const [flag, inline] = arg.split(/=(.*)/s) as [string, string | undefined];
    const def = defs.get(flag.replace(/^--?/, ""));
    if (!def) throw new UsageError(`unknown flag "${flag}"`);
    if (def.type !== "string" && def.type !== "enum") continue;
    const value = inline ?? (i + 1 < own.length && !isFlag(own[i + 1]!) ? own[++i] : undefined);
    if (!value) {
      const hint = "valueHint" in def && def.valueHint ? ` ${def.valueHint}` : "";
      const options = def.type === "enum" ? ` ${def.options?.join("|")}` : "";
      throw new UsageError(`${flag} needs a value: ${flag}${hint}${options}`);
    }
  }
}

/** The command's usage line, from citty's help text, e.g. `mill stop [OPTIONS] <NAME>`. */
async function usageLine(at: Located): Promise<string> {
  const help = stripVTControlCharacters(await renderUsage(at.command, at.parent));
  const line = help.split("\n").find((each) => each.startsWith("USAGE ")) ?? "";
  // citty names a command by its parent and itself only; the full path is `at.path`.
  const meta = await resolve(at.command.meta);
  const parentMeta = at.parent ? await resolve(at.parent.meta) : undefined;
  const citty = [parentMeta?.name, meta?.name].filter(Boolean).join(" ");
  const name = at.path.join(" ");
  const usage = `${name}${line
    .replace(/^USAGE /, "")
    .trim()
    .slice(citty.length)}`;
  return `${usage} (\`${name} --help\` lists the options)`;
}

/** Runs the command line and returns the exit code; never throws. */
export async function runCli(root: AnyCommand, argv: string[]): Promise<number> {
  useOutput();
  const rootName = (await resolve(root.meta))?.name ?? "mill";
  const at: Located = { command: root, path: [rootName], rest: argv };
  const json = ownArgs(argv).includes("--json");
  try {
    const { command, parent, rest } = await locate(at);
    const own = ownArgs(rest);
    if (command === root && own.includes("--version")) {
      const meta = await resolve(root.meta);
      process.stdout.write(versionReport(meta?.version ?? "unknown"));
      return EXIT_OK;
    }
    if (own.includes("--help") || own.includes("-h") || (command === root && rest.length === 0)) {
      process.stdout.write(forStream(`${await renderUsage(command, parent)}\n`, process.stdout));
      return EXIT_OK;
    }
    await checkArgs(command, rest);
    if (!command.run && command.subCommands) {
      const names = Object.keys(await resolve(command.subCommands)).join(", ");
      throw new UsageError(`missing command: ${at.path.join(" ")} needs one of ${names}`);
    }
    await runCommand(command, { rawArgs: rest });
    return EXIT_OK;
  } catch (error) {
    const message = errorMessage(error);
    const hint =
      error instanceof UsageError || error instanceof OperationError ? error.hint : undefined;
    // citty reports a missing or invalid argument as a CLIError.
    const usage =
      error instanceof UsageError || (error instanceof Error && error.name === "CLIError");
    if (!usage) {
      writeFailure(process.stderr, { message, hint }, json);
      return failedExitCode(error);
    }
    const line = `usage: ${await usageLine(at)}`;
    if (json) writeFailure(process.stderr, { message, hint: hint ?? line }, true);
    else {
      writeFailure(process.stderr, { message, hint }, false);
      process.stderr.write(`${line}\n`);
    }
    return EXIT_USAGE;
  }
}
