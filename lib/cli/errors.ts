/**
 * The ways a command fails, each with its exit code: bad usage (2), a failed operation (1), and
 * the agent of a node the cluster removed (3, REMOVED_EXIT_STATUS of lib/node/removal.ts).
 * Owns: error types for the command line and their exit codes. Must not touch: printing (see
 * dispatch.ts).
 */
import { NodeRemovedError, REMOVED_EXIT_STATUS } from "../node/removal.ts";

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
/** `mill agent` of a removed node: mill.service does not restart on it. */
export const EXIT_REMOVED = REMOVED_EXIT_STATUS;

/** The exit code of a failure that is not a usage error. */
export const failedExitCode = (error: unknown) =>
  error instanceof NodeRemovedError ? EXIT_REMOVED : EXIT_FAILED;
