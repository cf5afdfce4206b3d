/**
 * `mill remove NAME [--force]`: takes a node out of the cluster for good (its voter removal and
 * NodeRemove commit as one Raft entry; its id is never used again, its name may be).
 * Owns: the command, its retry while leadership moves, and its message. Must not touch: whether
 * the removal is safe (the leader decides, lib/cluster/lifecycle.ts).
 */
import { defineCommand } from "citty";
import { consola } from "consola";
import type { RemoveResponse } from "../api/wire.ts";
import { ApiError, type ClientOptions, callApi } from "../node/client.ts";
import { pollFor } from "../shared/poll.ts";
import { clientArgs } from "./args.ts";
import { nodePath } from "./drain.ts";
import { OperationError } from "./errors.ts";
import { failure } from "./failure.ts";
import { resolveTarget } from "./target.ts";

/** How long a removal is retried while the cluster answers 503 (leadership moving, electing). */
const RETRY_MS = 20_000;
const RETRY_INTERVAL_MS = 300;

const { json: _json, ...targetArgs } = clientArgs;

export const remove = defineCommand({
  meta: { name: "remove", description: "Take a node out of the cluster for good" },
  args: {
    name: { type: "positional", description: "The node's name (see mill nodes)", required: true },
    force: {
      type: "boolean",
      description: "Remove it even if it holds replicas (rescheduled) or the quorum would be thin",
    },
    ...targetArgs,
  },
  async run({ args }) {
    const target = await resolveTarget(args);
    const removed = await removeNode(target, args.name, args.force === true);
    consola.success(
      `${removed.name} (node ${removed.id}) removed from the cluster${removed.rescheduled > 0 ? `; ${removed.rescheduled} replica(s) rescheduled elsewhere` : ""}. Its name can join again from a fresh data dir`,
    );
    consola.info(
      `if you do not trust ${removed.name}, run \`mill token rotate\`: it still holds the token and the key of the cluster's TLS identity, which rotation replaces`,
    );
  },
});

/**
 * Asks the cluster to remove `name`, retrying while it answers 503 (the leader hands over
 * leadership first when it is the one removed). A 404 after such a retry means the earlier
 * attempt committed.
 */
export async function removeNode(
  target: ClientOptions,
  name: string,
  force: boolean,
): Promise<RemoveResponse> {
  const path = `${nodePath(name)}${force ? "?force=true" : ""}`;
  let removed: RemoveResponse | undefined;
  let unavailable: unknown;
  const answered = await pollFor(
    async () => {
      try {
        removed = await callApi<RemoveResponse>(target, "DELETE", path);
        return true;
      } catch (error) {
        if (unavailable !== undefined && error instanceof ApiError && error.status === 404) {
          throw new OperationError(
            `${name} is no longer a member: an earlier attempt removed it`,
            "see mill nodes",
          );
        }
        if (!(error instanceof ApiError && error.status === 503)) failure(error);
        unavailable = error;
        return false;
      }
    },
    RETRY_MS,
    RETRY_INTERVAL_MS,
  );
  if (!answered || removed === undefined) failure(unavailable);
  return removed;
}
