/**
 * `mill token rotate`: asks the cluster for a new token and prints it; the old one stops working
 * once the rotation commits. Running nodes fetch the new token into their data dirs by themselves.
 * Owns: that command's output. Must not touch: how rotation works (lib/api/token.ts).
 */
import { defineCommand } from "citty";
import { consola } from "consola";
import type { TokenRotateResponse } from "../api/wire.ts";
import { callApi } from "../node/client.ts";
import { clientArgs } from "./args.ts";
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

export const token = defineCommand({
  meta: { name: "token", description: "Manage the cluster token" },
  subCommands: { rotate },
});
