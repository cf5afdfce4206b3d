/**
 * Runs a citty command tree with Mill's contract: unknown commands and flags are usage errors (exit 2)
 * that print usage, failures print one line and a hint (exit 1), `--help` works at every level.
 * Owns: dispatch, exit codes and error printing. Must not touch: what the commands do.
 */
import { type ArgsDef, type CommandDef, renderUsage, runCommand } from "citty";
import { consola } from "consola";
import { errorMessage } from "../shared/errors.ts";
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, OperationError, UsageError } from "./errors.ts";
import { versionReport } from "./version.ts";

type AnyCommand = CommandDef<ArgsDef>;

async function resolve<T>(value: T | Promise<T> | (() => T | Promise<T>)): Promise<T> {
  return typeof value === "function" ? (value as () => T | Promise<T>)() : value;
}

/** Finds the command that argv names; returns it, its parent and the argv left for it. */
async function locate(
  root: AnyCommand,
  argv: string[],
): Promise<{ command: AnyCommand; parent?: AnyCommand; rest: string[] }> {
  let command = root;
  let parent: AnyCommand | undefined;
  let rest = argv;
  for (;;) {
    const subCommands = command.subCommands ? await resolve(command.subCommands) : undefined;
    const first = rest[0];
    if (!subCommands || first === undefined || first.startsWith("-"))
      return { command, parent, rest };
    const next = subCommands[first];
    if (!next) throw new UsageError(`unknown command "${first}"`, "run `mill --help` for the list");
    parent = command;
    command = await resolve(next);
    rest = rest.slice(1);
  }
}

/** Rejects flags the command does not declare (citty itself accepts anything). */
async function checkFlags(command: AnyCommand, argv: string[]): Promise<void> {
  const args = command.args ? await resolve(command.args) : {};
  const known = new Set<string>(["help", "h"]);
  for (const [name, def] of Object.entries(args)) {
    known.add(name);
    known.add(name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`));
    if ("alias" in def) for (const alias of [def.alias ?? []].flat()) known.add(alias);
    if (def.type === "boolean") known.add(`no-${name}`);
  }
  for (const arg of argv) {
    if (arg === "--") return;
    // "-" alone and negative numbers ("--cpu -1") are values, not flags.
    if (!arg.startsWith("-") || arg === "-" || /^-\d/.test(arg)) continue;
    const name = arg.replace(/^--?/, "").split("=")[0];
    if (!known.has(name)) throw new UsageError(`unknown flag "${arg.split("=")[0]}"`);
  }
}

function printError(error: unknown): void {
  const message = errorMessage(error);
  consola.error(message);
  const hint =
    error instanceof UsageError || error instanceof OperationError ? error.hint : undefined;
  if (hint) consola.info(hint);
}

/** Runs the command line and returns the exit code; never throws. */
export async function runCli(root: AnyCommand, argv: string[]): Promise<number> {
  let located: Awaited<ReturnType<typeof locate>> | undefined;
  try {
    located = await locate(root, argv);
    const { command, parent, rest } = located;
    if (command === root && rest.includes("--version")) {
      const meta = await resolve(root.meta);
      process.stdout.write(versionReport(meta?.version ?? "unknown"));
      return EXIT_OK;
    }
    if (rest.includes("--help") || rest.includes("-h") || (command === root && rest.length === 0)) {
      process.stdout.write(`${await renderUsage(command, parent)}\n`);
      return EXIT_OK;
    }
    await checkFlags(command, rest);
    await runCommand(command, { rawArgs: rest });
    return EXIT_OK;
  } catch (error) {
    printError(error);
    // citty reports a missing or invalid argument as a CLIError.
    const usage =
      error instanceof UsageError || (error instanceof Error && error.name === "CLIError");
    if (usage) {
      const { command, parent } = located ?? { command: root, parent: undefined };
      process.stderr.write(`\n${await renderUsage(command, parent)}\n`);
      return EXIT_USAGE;
    }
    return EXIT_FAILED;
  }
}
