/**
 * Turns what a node or the network answered into the command line's one-line failures.
 * Owns: that mapping and its hints. Must not touch: the requests.
 */
import { existsSync } from "node:fs";
import {
  ApiError,
  IdentityMismatchError,
  NodeStoppedError,
  UnreachableError,
} from "../node/client.ts";
import { UNIT_PATH } from "../node/service.ts";
import { OperationError } from "./errors.ts";

/** Where to find the token again, for every hint about a wrong or mistyped one. */
export const TOKEN_HINT =
  "copy the token again: `mill token show` on any node prints it (`mill init` printed it first)";

const HINTS: Record<number, string> = {
  401: `the token is mistyped (check its secret part, before the dot) or was rotated; ${TOKEN_HINT}`,
  502: "the node you asked cannot reach the leader: check that the leader runs and that the nodes reach each other",
  503: "retry in a moment; `mill nodes` through any node shows which nodes are up",
};

/** Rethrows an API or network error as an OperationError with a hint, any other as it is; use as `.catch(failure)`. */
export function failure(error: unknown): never {
  if (error instanceof ApiError) {
    throw new OperationError(`${error.message} (HTTP ${error.status})`, HINTS[error.status]);
  }
  if (error instanceof IdentityMismatchError) {
    throw new OperationError(
      error.message,
      `check the token for a typo in its fingerprint part (after the dot), or whether it was rotated (\`mill token rotate\` gives the cluster a new fingerprint); ${TOKEN_HINT}. If the token is right, this server is not a node of that cluster (possible man-in-the-middle)`,
    );
  }
  if (error instanceof NodeStoppedError) {
    const service = existsSync(UNIT_PATH) ? "`systemctl start mill`, or " : "";
    throw new OperationError(
      error.message,
      `start it with ${service}\`mill agent --data-dir ${error.dataDir}\`; or ask another node with --address`,
    );
  }
  if (error instanceof UnreachableError) {
    throw new OperationError(error.message, "check the address and that the node is running");
  }
  throw error;
}
