/**
 * The two ways a command fails, each with its exit code: bad usage (2) and a failed operation (1).
 * Owns: error types for the command line. Must not touch: printing (see dispatch.ts).
 */

/** The command line itself is wrong: unknown command or flag, missing or invalid value. Exit 2. */
export class UsageError extends Error {
  override name = "UsageError";
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

/** The operation was understood but failed. Exit 1. `hint` says what to do next. */
export class OperationError extends Error {
  override name = "OperationError";
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
