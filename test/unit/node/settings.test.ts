import assert from "node:assert/strict";
import { test } from "node:test";
import { healthSettings } from "../../../lib/node/settings.ts";

test("health settings default to 5 s heartbeats, a 15 s timeout, a 1 s watchdog tick, 5 min for a join", () => {
  assert.deepEqual(healthSettings({}), {
    heartbeatIntervalMs: 5000,
    heartbeatTimeoutMs: 15_000,
    watchdogTickMs: 1000,
    joinExpiryMs: 300_000,
    snapshotEvery: 10_000,
  });
});

test("health settings come from the environment", () => {
  const settings = healthSettings({
    MILL_HEARTBEAT_INTERVAL_MS: "200",
    MILL_HEARTBEAT_TIMEOUT_MS: "1500",
    MILL_WATCHDOG_TICK_MS: "100",
    MILL_JOIN_EXPIRY_MS: "3000",
    MILL_SNAPSHOT_EVERY: "5",
  });
  assert.deepEqual(settings, {
    heartbeatIntervalMs: 200,
    heartbeatTimeoutMs: 1500,
    watchdogTickMs: 100,
    joinExpiryMs: 3000,
    snapshotEvery: 5,
  });
});

test("a bad value names the variable", () => {
  assert.throws(
    () => healthSettings({ MILL_WATCHDOG_TICK_MS: "soon" }),
    /MILL_WATCHDOG_TICK_MS=soon/,
  );
  assert.throws(
    () => healthSettings({ MILL_HEARTBEAT_INTERVAL_MS: "20000" }),
    /must be longer than MILL_HEARTBEAT_INTERVAL_MS/,
  );
  assert.throws(
    () => healthSettings({ MILL_SNAPSHOT_EVERY: "0" }),
    /^Error: MILL_SNAPSHOT_EVERY=0 is not a whole number of entries from 1 to 10000000$/,
  );
});
