/**
 * cgroup v2 limits for allocations, where the host allows them: a `mill` parent group with the cpu
 * and memory controllers delegated, and one `alloc-<id>` group per allocation with its cpu.max and
 * memory.max. Where cgroup v2 is not usable, cpu and memory are reservations only (said once).
 * Owns: the files under CGROUP_ROOT/mill. Must not touch: processes (the command enters its group
 * itself, see enterArgv), allocation files, restart decisions.
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { errorMessage } from "../shared/errors.ts";
import type { Log } from "../shared/log.ts";

export const DEFAULT_CGROUP_ROOT = "/sys/fs/cgroup";
const CGROUP_GROUP = "mill";
const CPU_PERIOD_MICROS = 100_000;

/** What a group's limits are made of. */
export interface CgroupLimits {
  readonly id: number;
  readonly cpu: number;
  readonly memoryBytes: number;
}

export class AllocationCgroups {
  /** The parent group; undefined where limits cannot be set; null until first needed. */
  #parent: string | undefined | null = null;

  constructor(
    readonly root: string,
    readonly log: Log,
  ) {}

  /** The allocation's group with its limits set, or undefined where limits cannot be set. */
  create(limits: CgroupLimits): string | undefined {
    const parent = this.#parentGroup();
    if (!parent) return undefined;
    const dir = join(parent, `alloc-${limits.id}`);
    try {
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(
        join(dir, "cpu.max"),
        `${Math.round(limits.cpu * CPU_PERIOD_MICROS)} ${CPU_PERIOD_MICROS}\n`,
      );
      fs.writeFileSync(join(dir, "memory.max"), `${limits.memoryBytes}\n`);
      return dir;
    } catch (error) {
      this.log.warn(
        `allocation ${limits.id}: cannot set cgroup limits (${errorMessage(error)}): its cpu and memory are reservations only`,
      );
      return undefined;
    }
  }

  /** Removes the allocation's group once its processes are gone. */
  release(id: number): void {
    if (!this.#parent) return;
    try {
      fs.rmdirSync(join(this.#parent, `alloc-${id}`));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
        this.log.warn(`allocation ${id}: cannot remove its cgroup: ${errorMessage(error)}`);
      }
    }
  }

  /** Sets up the parent group once; says once in the log when limits are not possible. */
  #parentGroup(): string | undefined {
    if (this.#parent !== null) return this.#parent;
    const problem = prepareCgroupParent(this.root);
    this.#parent = problem === undefined ? join(this.root, CGROUP_GROUP) : undefined;
    if (problem === undefined) {
      this.log.info(
        `workload limits: cgroup v2 at ${this.root}/${CGROUP_GROUP} enforces cpu.max and memory.max`,
      );
    } else {
      this.log.warn(
        `workload limits: ${problem}; cpu and memory are reservations only, not enforced`,
      );
    }
    return this.#parent;
  }
}

/**
 * The argv that runs `command` inside `group`: the shell moves itself into the group and then
 * becomes the command, so there is no moment outside it.
 */
export function enterArgv(group: string, command: readonly string[]): string[] {
  const enter = 'echo $$ > "$1" && shift && exec "$@"';
  return ["/bin/sh", "-c", enter, "mill-enter-cgroup", join(group, "cgroup.procs"), ...command];
}

/** Returns why cgroup v2 limits cannot be used under `root`, or undefined once they can. */
export function prepareCgroupParent(root: string): string | undefined {
  let controllers: string[];
  try {
    controllers = fs.readFileSync(join(root, "cgroup.controllers"), "utf8").trim().split(/\s+/);
  } catch {
    return `${root} is not a cgroup v2 mount`;
  }
  const missing = ["cpu", "memory"].filter((name) => !controllers.includes(name));
  if (missing.length > 0)
    return `cgroup v2 at ${root} lacks the ${missing.join(" and ")} controller`;
  const parent = join(root, CGROUP_GROUP);
  try {
    enableControllers(root);
    fs.mkdirSync(parent, { recursive: true });
    enableControllers(parent);
    return undefined;
  } catch (error) {
    return `cannot delegate cpu and memory under ${root} (${errorMessage(error)})`;
  }
}

function enableControllers(dir: string): void {
  const control = join(dir, "cgroup.subtree_control");
  const enabled = fs.readFileSync(control, "utf8").trim().split(/\s+/);
  if (enabled.includes("cpu") && enabled.includes("memory")) return;
  fs.writeFileSync(control, "+cpu +memory");
}
