/**
 * The `mill` command tree. Each subcommand lives in its own file and is registered here once it works.
 * Owns: the list of commands. Must not touch: what they do.
 */
import { defineCommand } from "citty";
import { MILL_VERSION } from "../shared/version.ts";
import { agent } from "./agent.ts";
import { doctor } from "./doctor.ts";
import { drain, undrain } from "./drain.ts";
import { init } from "./init.ts";
import { join } from "./join.ts";
import { leave } from "./leave.ts";
import { logs } from "./logs.ts";
import { ps } from "./ps.ts";
import { recover } from "./recover.ts";
import { remove } from "./remove.ts";
import { nodes, status } from "./status.ts";
import { stop } from "./stop.ts";
import { token } from "./token.ts";
import { workloadRun } from "./workload-run.ts";

export const VERSION: string = MILL_VERSION;

export const mill = defineCommand({
  meta: {
    name: "mill",
    version: VERSION,
    description: "Turn a few fresh Linux VMs into one cluster",
  },
  subCommands: {
    init,
    join,
    status,
    nodes,
    run: workloadRun,
    ps,
    logs,
    stop,
    drain,
    undrain,
    remove,
    leave,
    recover,
    token,
    agent,
    doctor,
  },
});
