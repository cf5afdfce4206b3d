/**
 * `mill status` and `mill nodes`: the cluster as one node sees it after a read barrier.
 * Owns: fetching and printing. Must not touch: how the views are built (lib/cluster/views.ts).
 */
import { defineCommand } from "citty";
import { type NodesJson, renderNodes, renderStatus, type StatusJson } from "../cluster/views.ts";
import { callApi } from "../node/client.ts";
import { clientArgs } from "./args.ts";
import { failure } from "./failure.ts";
import { resolveTarget } from "./target.ts";

export const status = defineCommand({
  meta: { name: "status", description: "Show the cluster's health and each node's resources" },
  args: clientArgs,
  async run({ args }) {
    const target = await resolveTarget(args);
    const view = await callApi<StatusJson>(target, "GET", "/v1/status").catch(failure);
    process.stdout.write(args.json ? `${JSON.stringify(view)}\n` : `${renderStatus(view)}\n`);
  },
});

export const nodes = defineCommand({
  meta: { name: "nodes", description: "List the cluster's nodes with their addresses and roles" },
  args: clientArgs,
  async run({ args }) {
    const target = await resolveTarget(args);
    const view = await callApi<NodesJson>(target, "GET", "/v1/nodes").catch(failure);
    process.stdout.write(args.json ? `${JSON.stringify(view)}\n` : `${renderNodes(view)}\n`);
  },
});
