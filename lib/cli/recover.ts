/**
 * `mill recover [--data-dir DIR] [--force]`: on a survivor whose majority is gone for good, with
 * its agent stopped, make it a one-node cluster keeping everything it committed.
 * Owns: the command and what it prints. Must not touch: the rewrite (lib/node/recover.ts).
 */
import { defineCommand } from "citty";
import { consola } from "consola";
import { RecoverRefused, recoverNode } from "../node/recover.ts";
import { dataDirArg, resolveDataDir } from "./args.ts";
import { OperationError } from "./errors.ts";
import { failure } from "./failure.ts";

export const recover = defineCommand({
  meta: {
    name: "recover",
    description: "On a survivor of a lost majority (agent stopped): continue as a one-node cluster",
  },
  args: {
    ...dataDirArg,
    force: {
      type: "boolean",
      description: "Recover even though a majority of the voters still answers",
    },
  },
  async run({ args }) {
    const dataDir = resolveDataDir(args["data-dir"]);
    const report = await recoverNode(dataDir, {
      force: args.force === true,
      now: Date.now(),
      probeTimeoutMs: 2_000,
    }).catch((error) => {
      if (error instanceof RecoverRefused) throw new OperationError(error.message, error.hint);
      return failure(error);
    });
    const late =
      report.uncommitted === 0
        ? ""
        : ` (the last ${report.uncommitted} were not known to be committed here; they are now)`;
    const others =
      report.removed.length === 0
        ? ""
        : `; ${report.removed.join(", ")} marked removed: they must join again from a fresh data dir`;
    consola.success(
      `${report.name} recovered: kept every entry up to index ${report.kept}${late}; the cluster had ${report.nodesBefore} node(s) and is now ${report.name} alone, last index ${report.lastIndex}${others}`,
    );
    consola.info(
      `next: start it (mill agent --data-dir ${dataDir}, or systemctl start mill), check mill status, then add nodes with mill join HOST:4400 --token TOKEN (same token and identity as before)`,
    );
  },
});
