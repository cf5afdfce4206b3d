/**
 * `mill ps [--json]`: one row per allocation, as any node sees the committed state.
 * Owns: fetching and printing. Must not touch: the rows' shape (lib/workloads/view.ts).
 */
import { defineCommand } from "citty";
import type { AllocationsResponse } from "../api/wire.ts";
import { callApi } from "../node/client.ts";
import { formatPs } from "../workloads/view.ts";
import { clientArgs } from "./args.ts";
import { failure } from "./failure.ts";
import { resolveTarget } from "./target.ts";

export const ps = defineCommand({
  meta: { name: "ps", description: "List the workloads' allocations: where each replica runs" },
  args: clientArgs,
  async run({ args }) {
    const target = await resolveTarget(args);
    const view = await callApi<AllocationsResponse>(target, "GET", "/v1/allocations").catch(
      failure,
    );
    process.stdout.write(
      args.json ? `${JSON.stringify(view)}\n` : `${formatPs(view.allocations, view.now)}\n`,
    );
  },
});
