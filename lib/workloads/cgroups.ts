/**
 * cgroup v2 for allocations, where the host has a writable cgroup v2 mount: one group per
 * allocation under CGROUP2/mill/<node key>/alloc-<id>, which holds every process the allocation
 * ever starts (a `setsid` child included), so a stop ends all of it. Where the cpu and memory
 * controllers can be delegated the group also gets cpu.max and memory.max; elsewhere cpu and
 * memory are reservations only (said once). Without a usable mount there are no groups at all and
 * the supervisor follows the session instead (containment.ts).
 * Owns: the files under CGROUP2/mill. Must not touch: processes (the supervisor signals them and
 * moves each one into its group while it is held), allocation files, restart decisions.
 *
 * The node key (a hash of the data dir) keeps two nodes on one host (tests, demos) apart: their
 * allocation ids overlap.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { join, resolve } from "node:path";
import { errorMessage } from "../shared/errors.ts";
import type { Log } from "../shared/log.ts";
import { checkAllocationId } from "./allocation-dirs.ts";

const CGROUP_GROUP = "mill";
const CPU_PERIOD_MICROS = 100_000;

/** What a group's limits are made of. */
export interface CgroupLimits {
  readonly id: number;
  readonly cpu: number;
  readonly memoryBytes: number;
}

/** The mount point of the cgroup v2 hierarchy in /proc/self/mounts text, if there is one. */
export function cgroup2Mount(mounts: string): string | undefined {
  for (const line of mounts.split("\n")) {
    const [, mountPoint, type] = line.split(" ");
    if (type === "cgroup2" && mountPoint) return mountPoint.replace(/\\040/g, " ");
  }
  return undefined;
}

/** Where this host mounts cgroup v2, or undefined. */
export function defaultCgroupRoot(): string | undefined {
  try {
    return cgroup2Mount(fs.readFileSync("/proc/self/mounts", "utf8"));
  } catch {
    return undefined;
  }
}

/** The node's key under CGROUP2/mill: stable for one data dir, different for another. */
export function nodeKey(dataDir: string): string {
  return createHash("sha256").update(resolve(dataDir)).digest("hex").slice(0, 12);
}

type Parent = { readonly dir: string; readonly limits: boolean };

export class AllocationCgroups {
  /** The node's parent group; undefined where there are none; null until first needed. */
  #parent: Parent | undefined | null = null;

  constructor(
    readonly root: string | undefined,
    readonly key: string,
    readonly log: Log,
  ) {}

  /** The allocation's group (limits set where possible), or undefined where there are none. */
  create(limits: CgroupLimits): string | undefined {
    const parent = this.#parentGroup();
    if (!parent) return undefined;
    checkAllocationId(limits.id);
    const dir = join(parent.dir, `alloc-${limits.id}`);
    fs.mkdirSync(dir, { recursive: true });
    if (!parent.limits) return dir;
    try {
      fs.writeFileSync(
        join(dir, "cpu.max"),
        `${Math.round(limits.cpu * CPU_PERIOD_MICROS)} ${CPU_PERIOD_MICROS}\n`,
      );
      fs.writeFileSync(join(dir, "memory.max"), `${limits.memoryBytes}\n`);
    } catch (error) {
      this.log.warn(
        `allocation ${limits.id}: cannot set cgroup limits (${errorMessage(error)}): its cpu and memory are reservations only`,
      );
    }
    return dir;
  }

  /** Moves a process into the allocation's group (before it runs its command). */
  enter(group: string, pid: number): void {
    fs.writeFileSync(join(group, "cgroup.procs"), `${pid}\n`);
  }

  /** The pids in the allocation's group, or undefined when it has none (no cgroup v2 here). */
  procs(id: number): number[] | undefined {
    const dir = this.#existing(id);
    if (!dir) return undefined;
    try {
      return fs
        .readFileSync(join(dir, "cgroup.procs"), "utf8")
        .split("\n")
        .filter((line) => /^\d+$/.test(line))
        .map(Number);
    } catch {
      return undefined;
    }
  }

  /** SIGKILLs everything in the group at once (cgroup.kill); false where the kernel lacks it. */
  killAll(id: number): boolean {
    const dir = this.#existing(id);
    if (!dir || !fs.existsSync(join(dir, "cgroup.kill"))) return false;
    fs.writeFileSync(join(dir, "cgroup.kill"), "1\n");
    return true;
  }

  /** Removes the allocation's group once its processes are gone. */
  release(id: number): void {
    const dir = this.#existing(id);
    if (!dir) return;
    try {
      fs.rmdirSync(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
        this.log.warn(`allocation ${id}: cannot remove its cgroup: ${errorMessage(error)}`);
      }
    }
  }

  /**
   * Removes this node's empty groups of allocations it no longer runs (`runs(id)` is false): left
   * by an allocation that ended while no agent watched it, or by an agent that was killed. A
   * group that still lists a process stays, and so does one the kernel refuses to remove. Only
   * this node's own groups, and it creates nothing.
   */
  releaseStale(runs: (id: number) => boolean): void {
    if (!this.root) return;
    const dir = join(this.root, CGROUP_GROUP, this.key);
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const id = /^alloc-(\d+)$/.exec(name)?.[1];
      if (id === undefined || runs(Number(id))) continue;
      const group = join(dir, name);
      if (listsProcesses(group)) continue;
      try {
        fs.rmdirSync(group);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== "ENOENT" && code !== "EBUSY" && code !== "ENOTEMPTY") {
          this.log.warn(`cannot remove the stale cgroup ${group}: ${errorMessage(error)}`);
        }
      }
    }
  }

  #existing(id: number): string | undefined {
    checkAllocationId(id);
    const parent = this.#parentGroup();
    const dir = parent && join(parent.dir, `alloc-${id}`);
    return dir && fs.existsSync(dir) ? dir : undefined;
  }

  /** Sets up the parent group once; says once in the log what it can and cannot do. */
  #parentGroup(): Parent | undefined {
    if (this.#parent !== null) return this.#parent;
    const prepared = prepareCgroupParent(this.root, this.key);
    this.#parent = prepared.parent;
    if (prepared.parent) {
      this.log.info(
        `workload containment: each allocation gets its own cgroup under ${prepared.parent.dir}`,
      );
    }
    if (prepared.parent?.limits) {
      this.log.info(`workload limits: cgroup v2 at ${this.root} enforces cpu.max and memory.max`);
    } else {
      this.log.warn(
        `workload limits: ${prepared.problem}; cpu and memory are reservations only, not enforced`,
      );
    }
    if (!prepared.parent) {
      this.log.warn(
        "workload containment: no writable cgroup v2, so stop follows each allocation's session and process tree",
      );
    }
    return this.#parent;
  }
}

/** Whether a group's cgroup.procs names any process (a group we cannot read counts as busy). */
function listsProcesses(group: string): boolean {
  try {
    return fs.readFileSync(join(group, "cgroup.procs"), "utf8").trim() !== "";
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ENOENT";
  }
}

/**
 * Removes a node's empty groups (every empty `alloc-<id>` and then its parent), for a node that is
 * gone for good (tests, a node that left). A group that still holds a process stays, and so does
 * its parent. Returns how many groups are left.
 */
export function removeNodeCgroups(root: string | undefined, key: string): number {
  if (!root) return 0;
  const dir = join(root, CGROUP_GROUP, key);
  let left = 0;
  let groups: string[];
  try {
    groups = fs
      .readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
  } catch {
    return 0;
  }
  for (const group of groups) {
    try {
      fs.rmdirSync(join(dir, group));
    } catch {
      left++;
    }
  }
  if (left > 0) return left;
  try {
    fs.rmdirSync(dir);
  } catch {
    return 1;
  }
  return 0;
}

/**
 * The node's parent group under `root` (created), whether it can carry limits, and why not.
 * No parent when `root` is not a writable cgroup v2 mount.
 */
export function prepareCgroupParent(
  root: string | undefined,
  key: string,
): { parent?: Parent; problem?: string } {
  if (!root) return { problem: "this host has no cgroup v2 mount" };
  let controllers: string[];
  try {
    controllers = fs.readFileSync(join(root, "cgroup.controllers"), "utf8").trim().split(/\s+/);
  } catch {
    return { problem: `${root} is not a cgroup v2 mount` };
  }
  const top = join(root, CGROUP_GROUP);
  const dir = join(top, key);
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (error) {
    return { problem: `cannot create ${dir} (${errorMessage(error)})` };
  }
  const missing = ["cpu", "memory"].filter((name) => !controllers.includes(name));
  if (missing.length > 0) {
    return {
      parent: { dir, limits: false },
      problem: `cgroup v2 at ${root} lacks the ${missing.join(" and ")} controller`,
    };
  }
  try {
    for (const level of [root, top, dir]) enableControllers(level);
    return { parent: { dir, limits: true } };
  } catch (error) {
    return {
      parent: { dir, limits: false },
      problem: `cannot delegate cpu and memory under ${root} (${errorMessage(error)})`,
    };
  }
}

function enableControllers(dir: string): void {
  const control = join(dir, "cgroup.subtree_control");
  const enabled = fs.readFileSync(control, "utf8").trim().split(/\s+/);
  if (enabled.includes("cpu") && enabled.includes("memory")) return;
  fs.writeFileSync(control, "+cpu +memory");
}
