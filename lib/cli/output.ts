/**
 * How the command line writes: progress and results on stdout, warnings and failures on stderr,
 * colour only on a terminal and never with NO_COLOR, a failure as one line and its hint (or as
 * JSON with --json).
 * Owns: that formatting, for every command and for a running node's log. Must not touch: what the
 * commands say (they pass their words through consola and the error types in errors.ts).
 */
import { formatWithOptions, stripVTControlCharacters } from "node:util";
import { consola, type LogObject } from "consola";

interface Stream {
  readonly isTTY?: boolean;
  write(text: string): unknown;
}

/** Colour only when the stream is a terminal and the user has not opted out (no-color.org). */
export function colorOn(stream: Stream, env: NodeJS.ProcessEnv = process.env): boolean {
  return stream.isTTY === true && !env.NO_COLOR && env.TERM !== "dumb";
}

const paint = (on: boolean, code: number, text: string) =>
  on ? `\u001B[${code}m${text}\u001B[39m` : text;

/** Prefixes of consola's message types; those on stderr are the ones that mean trouble. */
const KINDS: Record<string, { mark: string; color: number; stderr?: true }> = {
  success: { mark: "✔", color: 32 },
  ready: { mark: "✔", color: 32 },
  start: { mark: "◐", color: 35 },
  info: { mark: "ℹ", color: 36 },
  debug: { mark: "⚙", color: 90 },
  trace: { mark: "→", color: 90 },
  warn: { mark: "warning:", color: 33, stderr: true },
  error: { mark: "error:", color: 31, stderr: true },
  fail: { mark: "error:", color: 31, stderr: true },
  fatal: { mark: "error:", color: 31, stderr: true },
};

/** One consola message as one line (or more, if the message has them), without decoration. */
export function formatLog(entry: Pick<LogObject, "type" | "tag" | "args">, color: boolean): string {
  const kind = KINDS[entry.type];
  const text = formatWithOptions({ colors: color }, ...entry.args);
  const mark = kind ? `${paint(color, kind.color, kind.mark)} ` : "";
  return `${entry.tag ? `[${entry.tag}] ` : ""}${mark}${text}\n`;
}

/** Routes every consola message through formatLog, to stdout or stderr by its kind. */
export function useOutput(stdout: Stream = process.stdout, stderr: Stream = process.stderr): void {
  consola.setReporters([
    {
      log(entry) {
        const stream = KINDS[entry.type]?.stderr ? stderr : stdout;
        stream.write(formatLog(entry, colorOn(stream)));
      },
    },
  ]);
}

/** Text for `stream`: as given on a terminal, without escape codes anywhere else. */
export function forStream(text: string, stream: Stream): string {
  return colorOn(stream) ? text : stripVTControlCharacters(text);
}

/** A failure, written to stderr: `error: …` and `hint: …`, or one JSON object with --json. */
export function writeFailure(
  stderr: Stream,
  failure: { readonly message: string; readonly hint?: string | undefined },
  json: boolean,
): void {
  if (json) {
    stderr.write(`${JSON.stringify({ error: failure.message, hint: failure.hint ?? null })}\n`);
    return;
  }
  const color = colorOn(stderr);
  stderr.write(`${paint(color, 31, "error:")} ${failure.message}\n`);
  if (failure.hint) stderr.write(`${paint(color, 36, "hint:")} ${failure.hint}\n`);
}
