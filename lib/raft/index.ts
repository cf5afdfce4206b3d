/**
 * The Raft room's public face: the pure core, the vocabulary, and the I/O pieces that run it
 * (driver, storage, transport). Other rooms import from here only.
 * Owns: the export list. Must not touch: anything else.
 */

export { type RaftConfig, RaftCore, type RaftRestore } from "./core.ts";
export {
  ProposalLostError,
  type RaftNodeOptions,
  type RunningRaftNode,
  startRaftNode,
} from "./driver.ts";
export { decodeMembership, encodeMembership } from "./membership.ts";
export { StorageCorruptError } from "./storage/records.ts";
export {
  openStorage,
  type PersistPart,
  type RaftStorage,
  type StorageFs,
  type StorageOptions,
} from "./storage/storage.ts";
export {
  parseAddress,
  startTransport,
  type Transport,
  type TransportOptions,
} from "./transport/transport.ts";
export * from "./types.ts";
