/**
 * Every default of a Raft node's settings, in one place: the core's (replication window and
 * batches, PreVote, CheckQuorum) and the driver's (time, snapshots, membership catch-up).
 * Owns: these numbers. Must not touch: anything else.
 */

export const RAFT_DEFAULTS = {
  /** Time per Raft tick. */
  tickMs: 100,
  heartbeatTicks: 1,
  /** Elections time out in [electionTicks, 2 * electionTicks) ticks: [500, 1000) ms by default. */
  electionTicks: 5,
  /** Appends in flight per peer. */
  maxInflight: 64,
  /** Entries per append. */
  maxBatchEntries: 256,
  /** Payload bytes per append (a single larger entry still goes alone). */
  maxBatchBytes: 1024 * 1024,
  preVote: true,
  checkQuorum: true,
  snapshotEvery: 10_000,
  commitNewsMs: 5,
  catchUpEntries: 10,
  catchUpTimeoutMs: 60_000,
} as const;
