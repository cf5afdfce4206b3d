/**
 * Which user workloads run as: the `mill-workload` system user, created where it is missing and
 * the agent can create it; else `nobody`; never root. An agent that is not root cannot switch
 * users, so its workloads run as the agent's own user (and it says so).
 * Owns: that decision, from the agent's uid and the text of /etc/passwd. Must not touch: files,
 * processes (process-host.ts reads /etc/passwd and runs useradd).
 */

export const WORKLOAD_USER = "mill-workload";
/** The fallback every Linux has; 65534 when even its passwd line is missing. */
const FALLBACK_USER = "nobody";
const FALLBACK_ID = 65_534;

/** `useradd` arguments for a system user with its own group, no home and no login shell. */
export const USERADD_ARGS = [
  "--system",
  "--user-group",
  "--no-create-home",
  "--home-dir",
  "/nonexistent",
  "--shell",
  "/usr/sbin/nologin",
  WORKLOAD_USER,
];

export interface WorkloadUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

export interface WorkloadUserChoice {
  readonly user: WorkloadUser | undefined;
  /** True when the caller should create WORKLOAD_USER and ask again. */
  readonly create: boolean;
  /** What the agent should log, when anything. */
  readonly warning?: string;
}

/** The uid and gid of `name` in passwd text; undefined when it has no well-formed line. */
export function passwdEntry(passwd: string, name: string): WorkloadUser | undefined {
  for (const line of passwd.split("\n")) {
    const [user, , uid, gid] = line.split(":");
    if (user !== name || uid === undefined || gid === undefined) continue;
    if (!/^\d+$/.test(uid) || !/^\d+$/.test(gid)) return undefined;
    return { name, uid: Number(uid), gid: Number(gid) };
  }
  return undefined;
}

/**
 * The user for workloads: `mill-workload` when it exists; a request to create it when it does
 * not (unless that was tried); then `nobody`. Never uid or gid 0.
 */
export function chooseWorkloadUser(
  euid: number,
  passwd: string,
  tried: { created?: boolean } = {},
): WorkloadUserChoice {
  if (euid !== 0) {
    return {
      user: undefined,
      create: false,
      warning: `the agent is not root (uid ${euid}): workloads run as uid ${euid} and can read its data dir; run the agent as root to run them as ${WORKLOAD_USER}`,
    };
  }
  const own = passwdEntry(passwd, WORKLOAD_USER);
  if (own && own.uid !== 0 && own.gid !== 0) return { user: own, create: false };
  if (!own && !tried.created) return { user: undefined, create: true };
  const nobody = passwdEntry(passwd, FALLBACK_USER);
  const fallback =
    nobody && nobody.uid !== 0 && nobody.gid !== 0
      ? nobody
      : { name: FALLBACK_USER, uid: FALLBACK_ID, gid: FALLBACK_ID };
  return {
    user: fallback,
    create: false,
    warning: `no usable ${WORKLOAD_USER} user: workloads run as ${fallback.name} (uid ${fallback.uid})`,
  };
}
