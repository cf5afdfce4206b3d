/**
 * Turns what a node or the network answered into the command line's one-line failures.
 * Owns: that mapping and its hints. Must not touch: the requests.
 */
import { ApiError, UnreachableError } from "../node/client.ts";
import { OperationError } from "./errors.ts";

const HINTS: Record<number, string> = {
  401: "check the token: it is printed by mill init and stored in the data dir of every node",
  502: "the node you asked cannot reach the leader: check that the leader runs and that the nodes reach each other",
  503: "retry in a moment; `mill nodes` through any node shows which nodes are up",
};

/** Rethrows an API or network error as an OperationError with a hint, any other as it is; use as `.catch(failure)`. */
export function failure(error: unknown): never {
  if (error instanceof ApiError) {
    throw new OperationError(`${error.message} (HTTP ${error.status})`, HINTS[error.status]);
  }
  if (error instanceof UnreachableError) {
    throw new OperationError(error.message, "check the address and that the node is running");
  }
  throw error;
}
