/**
 * Tunables read from the environment, validated once at start.
 * Owns: MILL_HEARTBEAT_INTERVAL_MS, MILL_HEARTBEAT_TIMEOUT_MS, MILL_WATCHDOG_TICK_MS,
 * MILL_JOIN_EXPIRY_MS, MILL_SNAPSHOT_EVERY.
 * Must not touch: anything but parsing.
 */

import { RAFT_DEFAULTS } from "../raft/defaults.ts";

export interface HealthSettings {
  readonly heartbeatIntervalMs: number;
  readonly heartbeatTimeoutMs: number;
  readonly watchdogTickMs: number;
  /** A join not confirmed (its node a voter) this long after registering is removed. */
  readonly joinExpiryMs: number;
  /** Raft snapshots the state and compacts its log every this many applied entries. */
  readonly snapshotEvery: number;
}

const DEFAULTS: Omit<HealthSettings, "snapshotEvery"> = {
  heartbeatIntervalMs: 5000,
  heartbeatTimeoutMs: 15_000,
  watchdogTickMs: 1000,
  // Longer than a confirm may take: the leader waits up to a minute for the joiner to catch up.
  joinExpiryMs: 300_000,
};

const VARIABLES: Record<Exclude<keyof HealthSettings, "snapshotEvery">, string> = {
  heartbeatIntervalMs: "MILL_HEARTBEAT_INTERVAL_MS",
  heartbeatTimeoutMs: "MILL_HEARTBEAT_TIMEOUT_MS",
  watchdogTickMs: "MILL_WATCHDOG_TICK_MS",
  joinExpiryMs: "MILL_JOIN_EXPIRY_MS",
};

export function healthSettings(env: NodeJS.ProcessEnv): HealthSettings {
  const settings: Record<string, number> = { ...DEFAULTS, snapshotEvery: snapshotEvery(env) };
  for (const [key, variable] of Object.entries(VARIABLES)) {
    const text = env[variable];
    if (text === undefined || text === "") continue;
    const value = Number(text);
    if (!Number.isInteger(value) || value < 10 || value > 3_600_000) {
      throw new Error(
        `${variable}=${text} is not a whole number of milliseconds from 10 to 3600000`,
      );
    }
    settings[key] = value;
  }
  const result = settings as unknown as HealthSettings;
  if (result.heartbeatTimeoutMs <= result.heartbeatIntervalMs) {
    throw new Error(
      `MILL_HEARTBEAT_TIMEOUT_MS (${result.heartbeatTimeoutMs}) must be longer than MILL_HEARTBEAT_INTERVAL_MS (${result.heartbeatIntervalMs})`,
    );
  }
  return result;
}

function snapshotEvery(env: NodeJS.ProcessEnv): number {
  const text = env.MILL_SNAPSHOT_EVERY;
  if (text === undefined || text === "") return RAFT_DEFAULTS.snapshotEvery;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 10_000_000) {
    throw new Error(
      `MILL_SNAPSHOT_EVERY=${text} is not a whole number of entries from 1 to 10000000`,
    );
  }
  return value;
}
