/**
 * `mill leave [--data-dir DIR] [--force]`, on the node itself: drain it, remove it from the
 * cluster (as `mill remove`), let it stop itself (agent, workloads, WireGuard and its interface),
 * remove its service, and clear its data dir so the host can join again. The last node of a
 * cluster refuses (it would end the cluster) unless --force, which then stops its workloads and
 * its agent and clears it all the same.
 * Owns: the order of those steps and their messages. Must not touch: how the node stops itself
 * (lib/node/agent.ts and removal.ts), the removal's checks (the leader decides).
 */
import { rm } from "node:fs/promises";
import { defineCommand } from "citty";
import { consola } from "consola";
import type { AllocationsResponse, DrainResponse } from "../api/wire.ts";
import type { StatusJson } from "../cluster/views.ts";
import { type ClientOptions, callApi } from "../node/client.ts";
import { isInitialised, loadConfig } from "../node/config.ts";
import { runningPid } from "../node/daemon.ts";
import { removedMessage } from "../node/removal.ts";
import { removeService } from "../node/service.ts";
import { healthSettings } from "../node/settings.ts";
import { errorMessage } from "../shared/errors.ts";
import { pollFor, pollUntil } from "../shared/poll.ts";
import { AllocationDirs, workRoot } from "../workloads/allocation-dirs.ts";
import { nodeProcessHost } from "../workloads/process-host.ts";
import { dataDirArg, resolveDataDir } from "./args.ts";
import { nodePath, waitDrained } from "./drain.ts";
import { OperationError, UsageError } from "./errors.ts";
import { failure } from "./failure.ts";
import { removeNode } from "./remove.ts";
import { resolveTarget } from "./target.ts";

export const leave = defineCommand({
  meta: { name: "leave", description: "On a node: drain it, leave the cluster and tidy up" },
  args: {
    ...dataDirArg,
    force: {
      type: "boolean",
      description: "Leave even as the cluster's last node (ending it), or when drain is blocked",
    },
  },
  async run({ args }) {
    const dataDir = resolveDataDir(args["data-dir"]);
    const force = args.force === true;
    if (!isInitialised(dataDir)) {
      throw new UsageError(`${dataDir} holds no Mill node: nothing to leave`, "pass --data-dir");
    }
    if (removedMessage(dataDir) === undefined) {
      const { name } = await loadConfig(dataDir).catch(failure);
      const target = await resolveTarget({ "data-dir": dataDir });
      const status = await callApi<StatusJson>(target, "GET", "/v1/status").catch(failure);
      if (status.nodes.length <= 1) {
        if (!force) {
          throw new OperationError(
            `${name} is the cluster's last node: leaving would end the cluster and its workloads`,
            "run mill leave --force to end it",
          );
        }
        await stopEveryWorkload(target, dataDir);
        await stopAgent(dataDir);
      } else {
        await drainSelf(target, name, force);
        const removed = await removeNode(target, name, force);
        consola.info(
          `${name} (node ${removed.id}) removed from the cluster; waiting for it to stop`,
        );
        await awaitOwnStop(dataDir);
      }
    }
    if (await removeService()) consola.info("removed mill.service");
    await rm(workRoot(dataDir), { recursive: true, force: true });
    await rm(dataDir, { recursive: true, force: true });
    consola.success(
      `left the cluster and cleared ${dataDir}: this host can join again (mill join)`,
    );
  },
});

async function drainSelf(target: ClientOptions, name: string, force: boolean): Promise<void> {
  const path = nodePath(name, "drain");
  const started = await callApi<DrainResponse>(target, "POST", path).catch(failure);
  try {
    await waitDrained(target, path, started);
  } catch (error) {
    if (!force) throw error;
    consola.warn(`${errorMessage(error)}; --force: leaving anyway (they are rescheduled)`);
  }
}

/**
 * The node notices its removal within a heartbeat interval and stops itself (workloads, Raft,
 * WireGuard); give it three, then stop it here.
 */
async function awaitOwnStop(dataDir: string): Promise<void> {
  const { heartbeatIntervalMs } = healthSettings(process.env);
  const stopped = await pollFor(() => runningPid(dataDir) === undefined, 3 * heartbeatIntervalMs);
  if (!stopped) {
    consola.warn("the node did not stop by itself: stopping it");
    await stopAgent(dataDir);
  }
}

/** The last node: every workload stopped through the API and its processes gone, here. */
async function stopEveryWorkload(target: ClientOptions, dataDir: string): Promise<void> {
  const { allocations } = await callApi<AllocationsResponse>(
    target,
    "GET",
    "/v1/allocations",
  ).catch(failure);
  for (const name of new Set(allocations.map((row) => row.name))) {
    await callApi(target, "DELETE", `/v1/workloads/${encodeURIComponent(name)}`).catch(failure);
  }
  const dirs = new AllocationDirs(dataDir);
  await pollUntil(
    () =>
      dirs.ids().every((id) => {
        const record = dirs.readPid(id);
        return !record || nodeProcessHost.startTime(record.pid) !== record.startTime;
      }),
    60_000,
    () => new OperationError("the node's workload processes did not stop within 60 s"),
  );
}

/** SIGTERM to the node's agent, then waits until it is gone. */
async function stopAgent(dataDir: string): Promise<void> {
  const pid = runningPid(dataDir);
  if (pid === undefined) return;
  process.kill(pid, "SIGTERM");
  if (!(await pollFor(() => runningPid(dataDir) === undefined, 15_000, 50))) {
    throw new OperationError(`the node's agent (pid ${pid}) did not stop within 15 s`);
  }
}
