/**
 * Fake node dependencies for API tests: a real ClusterFsm behind a scripted Raft.
 * Owns: test doubles only.
 */

import type { ApiDeps } from "../../../lib/api/deps.ts";
import { createInternalApi } from "../../../lib/api/internal.ts";
import { MEMBER_HEADER } from "../../../lib/api/wire.ts";
import {
  commitRemovalThrough,
  commitThrough,
  encodeCommand,
  expireJoinThrough,
} from "../../../lib/cluster/commands.ts";
import { ClusterFsm } from "../../../lib/cluster/fsm.ts";
import { HeartbeatTable } from "../../../lib/cluster/health.ts";
import { fromPem } from "../../../lib/identity/der.ts";
import { fingerprintOfPem } from "../../../lib/identity/fingerprint.ts";
import { createNodeIdentity, nodeKeyOf } from "../../../lib/identity/node-key.ts";
import {
  type ClusterCredentials,
  createCredentials,
  tokenHashOf,
} from "../../../lib/identity/rotation.ts";
import { hashSecret } from "../../../lib/identity/token.ts";
import { createClusterIdentity } from "../../../lib/identity/x509.ts";
import type { NodeId, RaftStatus, Role } from "../../../lib/raft/types.ts";
import { deadline } from "../../../lib/shared/deadline.ts";
import type { DiskSample } from "../../../lib/shared/node-facts.ts";
import { formatProtocol, PROTOCOL_HEADER, PROTOCOL_VERSION } from "../../../lib/shared/protocol.ts";
import { init, register } from "../cluster/fixtures.ts";

export const TOKEN_SECRET = "s".repeat(32);
/** The cluster's TLS identity every fake node serves. */
export const IDENTITY = createClusterIdentity();
/** The full token for TOKEN_SECRET, as init prints it for IDENTITY. */
export const TOKEN = `mill_t_${TOKEN_SECRET}.${fingerprintOfPem(IDENTITY.certPem)}`;
export const MEMBER_SECRET = "member-secret-of-node-1";

export interface FakeNode {
  readonly deps: ApiDeps;
  readonly fsm: ClusterFsm;
  readonly proposals: Uint8Array[];
  readonly addedVoters: NodeId[];
  /** Nodes removed through removeServer, and leadership hand-overs, in order. */
  readonly removedServers: NodeId[];
  /** Replaces how a withdrawn join's removal behaves (ApiDeps.removeJoin, without the deadline). */
  removeLearner: (id: NodeId, command: Uint8Array) => Promise<unknown>;
  readonly transfers: NodeId[];
  readonly forwarded: Request[];
  readonly errors: unknown[];
  /** Lines the APIs logged as warnings (ApiDeps.warn). */
  readonly warnings: string[];
  /** Tokens and identities this node holds, the one it started with first; rotate() appends. */
  readonly held: ClusterCredentials[];
  role: Role;
  leader: NodeId;
  /** Replaces how proposals, reads and addVoter behave. */
  propose: (data: Uint8Array) => Promise<unknown>;
  readBarrier: () => Promise<void>;
  addVoter: (id: NodeId) => Promise<void>;
  forward: (request: Request) => Promise<Response>;
  /** Each node's data-dir disk as ApiDeps.diskOf answers it. */
  readonly disks: Map<NodeId, DiskSample>;
  /** Replaces how allocation output is read (ApiDeps.allocationLog). */
  allocationLog: ApiDeps["allocationLog"];
}

/** Node keys of members 1-3 of the fakes: certificates whose fingerprints their records hold. */
export const MEMBER_CERTS = new Map([1, 2, 3].map((id) => [id, createNodeIdentity()]));

/** The internal API's env for a caller that showed member `id`'s certificate. */
export function asMember(id: number): { clientCertificate: Uint8Array } {
  return { clientCertificate: fromPem("CERTIFICATE", MEMBER_CERTS.get(id)!.certPem) };
}

/** The registered node key of member `id`. */
export const memberKey = (id: number) => nodeKeyOf(MEMBER_CERTS.get(id)!.certPem);

/** POSTs `body` to the fake's internal API as member 1 with `secret` (its own by default). */
export function postInternal(node: FakeNode, path: string, body: unknown, secret = MEMBER_SECRET) {
  return createInternalApi(node.deps).request(
    path,
    {
      method: "POST",
      headers: {
        [MEMBER_HEADER]: "1",
        authorization: `Bearer ${secret}`,
        [PROTOCOL_HEADER]: formatProtocol(PROTOCOL_VERSION),
        "content-type": "application/json",
      },
      body: JSON.stringify(body),
    },
    asMember(1),
  );
}

/** A one-node cluster (node-1 on 10.0.0.1, leader, term 2) with `mesh` chosen at init. */
export function fakeNode(mesh: "wireguard" | "none" = "wireguard"): FakeNode {
  const fsm = new ClusterFsm();
  let index = 0;
  const applyNow = (data: Uint8Array) => fsm.apply(++index, data);
  applyNow(encodeCommand(init({ mesh, tokenHash: hashSecret(TOKEN_SECRET) })));
  applyNow(
    encodeCommand(
      register("node-1", 1, { memberSecretHash: hashSecret(MEMBER_SECRET), nodeKey: memberKey(1) }),
    ),
  );
  /** Voters in the fake's configuration; tests add more to model a larger cluster. */
  const voters: NodeId[] = [1];
  const heartbeats = new HeartbeatTable();
  let plans: Promise<unknown> = Promise.resolve();
  const commitTimeoutMs = 20;
  const commit = commitThrough({
    propose: (data) => {
      fake.proposals.push(data);
      return fake.propose(data);
    },
  });
  const commitRemoval = commitRemovalThrough({
    removeServer: async (id, command) => {
      fake.removedServers.push(id);
      voters.splice(0, voters.length, ...voters.filter((voter) => voter !== id));
      return command === undefined ? undefined : applyNow(command);
    },
  });
  const removeJoin = expireJoinThrough({
    removeLearner: (id, command) => fake.removeLearner(id, command),
  });
  const fake: FakeNode = {
    fsm,
    proposals: [],
    addedVoters: [],
    removedServers: [],
    removeLearner: async (id, command) => {
      // As the driver decides in its membership queue: a node promoted first stays.
      if (voters.includes(id)) return undefined;
      fake.removedServers.push(id);
      return applyNow(command);
    },
    transfers: [],
    forwarded: [],
    errors: [],
    warnings: [],
    held: [{ token: TOKEN, identity: IDENTITY }],
    role: "leader",
    leader: 1,
    propose: async (data) => applyNow(data),
    readBarrier: async () => {},
    addVoter: async (id) => {
      if (!voters.includes(id)) voters.push(id);
    },
    forward: async () => Response.json({ from: "leader" }, { status: 200 }),
    allocationLog: async () => undefined,
    disks: new Map(),
    deps: {
      raft: {
        status: (): RaftStatus => ({
          id: 1,
          role: fake.role,
          term: 2,
          leader: fake.leader,
          commit: index,
          applied: index,
          lastIndex: index,
          membership: { voters: [...voters], learners: [] },
        }),
        readBarrier: () => fake.readBarrier(),
        addVoter: (id) => {
          fake.addedVoters.push(id);
          return fake.addVoter(id);
        },
        transferLeadership: async (to) => {
          fake.transfers.push(to);
          fake.role = "follower";
          fake.leader = to;
        },
      },
      commit: (command) => deadline(commit(command), commitTimeoutMs),
      commitRemoval: (removal) => deadline(commitRemoval(removal), commitTimeoutMs),
      removeJoin: (removal) => deadline(removeJoin(removal), commitTimeoutMs),
      state: () => fsm.state,
      now: () => 50_000,
      forwardToLeader: (request) => {
        fake.forwarded.push(request);
        return fake.forward(request);
      },
      tlsIdentity: () => ({ certPem: IDENTITY.certPem, keyPem: IDENTITY.keyPem }),
      nodeCertificate: MEMBER_CERTS.get(1)!,
      heartbeats,
      heartbeatAge: (id) => (id === 1 ? 0 : undefined),
      diskOf: (id) => fake.disks.get(id),
      meshPeers: () => (mesh === "wireguard" ? new Map() : undefined),
      serializePlans: (task) => {
        const run = plans.then(task);
        plans = run.catch(() => {});
        return run;
      },
      allocationLog: (node, id, request) => fake.allocationLog(node, id, request),
      stateSnapshot: () => fsm.snapshot(),
      tokens: {
        current: (tokenHash) => fake.held.find((held) => tokenHashOf(held.token) === tokenHash),
        rotate: async (propose) => {
          const next = createCredentials("127.0.0.1");
          fake.held.push(next);
          return { next, proposed: await propose(next) };
        },
      },
      commitTimeoutMs,
      onError: (error) => fake.errors.push(error),
      warn: (line) => fake.warnings.push(line),
    },
  };
  return fake;
}
