/**
 * What a test that ran nodes leaves in cgroup v2: nothing. Each node's allocation groups live
 * under CGROUP2/mill/<node key> (lib/workloads/cgroups.ts). At cleanup a test ends every process
 * still in the groups of its own nodes (cgroup.kill), waits until the kernel says each group is
 * empty (cgroup.events: populated 0), then removes the groups: removing them right after a
 * SIGKILL fails while the dying processes are still listed, which left hundreds of groups behind.
 * Touches only the groups of the data dirs it is given.
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { pollFor } from "../../lib/shared/poll.ts";
import { defaultCgroupRoot, nodeKey, removeNodeCgroups } from "../../lib/workloads/cgroups.ts";

const populated = (group: string) => {
  try {
    return /^populated 1$/m.test(fs.readFileSync(join(group, "cgroup.events"), "utf8"));
  } catch {
    return false;
  }
};

/** Ends the processes in the allocation groups of the nodes at `dataDirs` and removes the groups. */
export async function removeTestCgroups(dataDirs: readonly string[]): Promise<void> {
  const root = defaultCgroupRoot();
  if (!root) return;
  const groups: string[] = [];
  for (const dataDir of dataDirs) {
    const parent = join(root, "mill", nodeKey(dataDir));
    const names = fs.existsSync(parent) ? fs.readdirSync(parent) : [];
    for (const name of names.filter((entry) => entry.startsWith("alloc-"))) {
      const group = join(parent, name);
      groups.push(group);
      if (populated(group) && fs.existsSync(join(group, "cgroup.kill"))) {
        fs.writeFileSync(join(group, "cgroup.kill"), "1\n");
      }
    }
  }
  await pollFor(() => !groups.some(populated), 10_000);
  for (const dataDir of dataDirs) removeNodeCgroups(root, nodeKey(dataDir));
}
