/**
 * `mill token show`: the current token, from this node's data dir (each node keeps it there, and
 * saves the new one after a rotation). `mill token rotate`: asks the cluster for a new token and
 * prints it; the old one stops working once the rotation commits.
 * Owns: that command's output. Must not touch: how rotation works (lib/api/token.ts).
 */
import { defineCommand } from "citty";
import { consola } from "consola";
import type { TokenRotateResponse } from "../api/wire.ts";
import { callApi } from "../node/client.ts";
import { isInitialised, loadToken } from "../node/config.ts";
import { clientArgs, dataDirArg, resolveDataDir } from "./args.ts";
import { OperationError } from "./errors.ts";
import { failure } from "./failure.ts";
import { resolveTarget } from "./target.ts";

const rotate = defineCommand({
  meta: {
    name: "rotate",
    description: "Issue a new cluster token; the current one stops working for joins and API calls",
  },
  args: clientArgs,
  async run({ args }) {
    const target = await resolveTarget(args);
    const { token } = await callApi<TokenRotateResponse>(target, "POST", "/v1/token/rotate").catch(
      failure,
    );
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ token })}\n`);
      return;
    }
    consola.success(
      "token rotated: the old token no longer works; running nodes keep working and save the new one in their data dirs",
    );
    process.stdout.write(`Token: ${token}\n`);
  },
});

const show = defineCommand({
  meta: {
    name: "show",
    description: "Print the cluster's current token, as this node keeps it in its data dir",
  },
  args: { json: clientArgs.json, ...dataDirArg },
  async run({ args }) {
    const dataDir = resolveDataDir(args["data-dir"]);
    if (!isInitialised(dataDir)) {
      throw new OperationError(
        `${dataDir} holds no Mill node, so no token`,
        "run it on a node of the cluster, or pass that node's --data-dir",
      );
    }
    const current = await loadToken(dataDir);
    process.stdout.write(
      args.json ? `${JSON.stringify({ token: current })}\n` : `Token: ${current}\n`,
    );
  },
});

export const token = defineCommand({
  meta: { name: "token", description: "Show or rotate the cluster token" },
  subCommands: { show, rotate },
});
