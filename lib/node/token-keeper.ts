/**
 * This node's copy of the cluster's credentials: the token (DATA_DIR/token) and the public TLS
 * identity it pins (DATA_DIR/tls.crt, tls.key), kept equal to the committed ones, so that local
 * `mill status` keeps working and the public API shows what the current token pins after
 * `mill token rotate`.
 * Owns: those files and DATA_DIR/rotation.next, asking members for rotated credentials, and
 * telling the public server which identity to show. Must not touch: how members are reached
 * (member-client.ts), the API routes (lib/api/token.ts), whether a pair may be used
 * (lib/identity/rotation.ts decides).
 *
 * The Raft log holds only the token's hash and the identity's fingerprint. The leader that
 * rotates stages the new pair in rotation.next before proposing; every node that sees a
 * committed hash its files do not hold takes the staged pair, or asks members (the leader first)
 * over the member-authenticated internal API, and accepts only a pair with the committed hash
 * and fingerprint whose key fits its certificate.
 *
 * Saving is crash-safe: the pair goes to rotation.next first (unless it is already there), then
 * to tls.key, tls.crt and token, one atomic write each; the public server switches, and
 * rotation.next is removed last. A
 * start that finds the three files disagreeing therefore also finds rotation.next, which was
 * checked against the committed hash before the first of them was written, and finishes the save
 * from it (resumeCredentials).
 */

import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { TokenCopy } from "../api/deps.ts";
import type { TokenShareResponse } from "../api/wire.ts";
import { type ClusterState, memberNodes, type NodeRecord } from "../cluster/state.ts";
import { readSecretFile, writeSecretFile } from "../identity/files.ts";
import { fingerprintOfPem } from "../identity/fingerprint.ts";
import { servedFingerprint } from "../identity/pinned-client.ts";
import {
  type ClusterCredentials,
  createCredentials,
  credentialsProblem,
  resumeCredentials,
  tokenHashOf,
} from "../identity/rotation.ts";
import type { ClusterIdentity } from "../identity/x509.ts";
import type { NodeId } from "../raft/types.ts";
import { errorMessage } from "../shared/errors.ts";
import { pollFor } from "../shared/poll.ts";
import { SerialQueue } from "../shared/serial.ts";
import { tlsCertPath, tlsKeyPath, tokenPath } from "./config.ts";
import { type MemberIdentity, postToMember } from "./member-client.ts";

const stagedPath = (dataDir: string) => join(dataDir, "rotation.next");
/** How long `mill token rotate` waits for the other members to serve the new identity. */
const SPREAD_MS = 5_000;
const SPREAD_POLL_MS = 50;

interface Held {
  readonly credentials: ClusterCredentials;
  readonly hash: string;
  readonly fingerprint: string;
}

function hold(credentials: ClusterCredentials): Held {
  const token = credentials.token.trim();
  return {
    credentials: { token, identity: credentials.identity },
    hash: tokenHashOf(token),
    fingerprint: fingerprintOfPem(credentials.identity.certPem),
  };
}

/** What the keeper needs of the running node; read at each sync. */
export interface KeeperContext {
  /** This node's advertise address, named in the certificates it makes. */
  readonly advertise: string;
  state(): ClusterState;
  leader(): NodeId;
  member(): MemberIdentity;
  readonly timeoutMs: number;
}

/** What one sync did: nothing to do, saved the committed pair, or found no member holding it. */
export type SyncOutcome = "current" | "updated" | "unavailable";

export class TokenKeeper implements TokenCopy {
  #held: Held;
  #staged: Held | undefined;
  #serve: (identity: ClusterIdentity) => void = () => {};
  readonly #queue = new SerialQueue();

  private constructor(
    readonly dataDir: string,
    private readonly context: KeeperContext,
    held: Held,
    staged: Held | undefined,
  ) {
    this.#held = held;
    this.#staged = staged;
  }

  /**
   * Opens the node's credentials; `saved` is what DATA_DIR/token, tls.crt and tls.key hold. A
   * save cut short by a crash is finished here; saved files that disagree otherwise throw one
   * line naming the data dir.
   */
  static async open(
    dataDir: string,
    saved: ClusterCredentials,
    context: KeeperContext,
  ): Promise<TokenKeeper> {
    const staged = existsSync(stagedPath(dataDir)) ? await readStaged(dataDir) : undefined;
    let resumed: ReturnType<typeof resumeCredentials>;
    try {
      resumed = resumeCredentials(saved, staged);
    } catch (error) {
      throw new Error(
        `${dataDir}: ${errorMessage(error)}; copy token, tls.crt and tls.key from another member's data dir`,
      );
    }
    const keeper = new TokenKeeper(
      dataDir,
      context,
      hold(resumed.use),
      resumed.staged && hold(resumed.staged),
    );
    if (resumed.rewrite) await keeper.#save(resumed.use);
    else if (staged && !resumed.staged) await rm(stagedPath(dataDir), { force: true });
    return keeper;
  }

  /** The identity this node serves, and the one its saved token pins. */
  identity(): ClusterIdentity {
    return this.#held.credentials.identity;
  }

  /** That identity's certificate fingerprint. */
  fingerprint(): string {
    return this.#held.fingerprint;
  }

  /** From now on, a newly saved identity is handed to `serve` (the public server's swap). */
  serveWith(serve: (identity: ClusterIdentity) => void): void {
    this.#serve = serve;
  }

  current(tokenHash: string): ClusterCredentials | undefined {
    if (this.#held.hash === tokenHash) return this.#held.credentials;
    return this.#staged?.hash === tokenHash ? this.#staged.credentials : undefined;
  }

  rotate<T>(
    propose: (next: ClusterCredentials) => Promise<T>,
  ): Promise<{ readonly next: ClusterCredentials; readonly proposed: T }> {
    return this.#queue.run(async () => {
      const next = createCredentials(this.context.advertise);
      await writeStaged(this.dataDir, next);
      this.#staged = hold(next);
      const proposed = await propose(next);
      // Saved and served at once if committed; a save that fails here is retried (and logged)
      // by the node's next sync, from the staged pair.
      await this.#sync().catch(() => undefined);
      if (this.#held.hash === tokenHashOf(next.token)) await this.#spread(this.#held.fingerprint);
      return { next, proposed };
    });
  }

  /**
   * Brings the saved and served credentials to the committed ones: from the staged pair, else
   * from the first member (leader first) that hands over a pair that passes credentialsProblem.
   * One at a time: a sync queued behind another finds the work done.
   */
  sync(): Promise<SyncOutcome> {
    return this.#queue.run(() => this.#sync());
  }

  async #sync(): Promise<SyncOutcome> {
    const state = this.context.state();
    const { tokenHash, tlsFingerprint } = state;
    const held = this.#held;
    if (tokenHash === "") return "current";
    if (held.hash === tokenHash && (tlsFingerprint ?? held.fingerprint) === held.fingerprint) {
      return "current";
    }
    const usable = (offered: ClusterCredentials) =>
      credentialsProblem(offered, tokenHash, tlsFingerprint) === undefined ? offered : undefined;
    let found = this.#staged && usable(this.#staged.credentials);
    const member = this.context.member();
    const leader = this.context.leader();
    const others = memberNodes(state)
      .filter((node) => node.id !== member.nodeId)
      .sort((a, b) => Number(b.id === leader) - Number(a.id === leader));
    for (const node of others) {
      if (found !== undefined) break;
      const reply = await postToMember(
        member,
        node,
        "/v1/internal/token",
        { tokenHash },
        this.context.timeoutMs,
      ).catch(() => undefined);
      if (reply?.status !== 200) continue;
      try {
        const shared = JSON.parse(reply.text) as TokenShareResponse;
        found = usable({ token: String(shared.token), identity: shared.tls });
      } catch {
        // Not a pair: ask the next member.
      }
    }
    if (found === undefined) return "unavailable";
    await this.#save(found);
    return "updated";
  }

  /**
   * Waits until every other ready member's public port shows `fingerprint` (each fetches the new
   * pair as soon as it applies the rotation), for at most SPREAD_MS: the new token then works
   * through any of them as soon as `mill token rotate` prints it. A member that is down, or slow,
   * catches up by itself later.
   */
  async #spread(fingerprint: string): Promise<void> {
    const self = this.context.member().nodeId;
    const shows = (node: NodeRecord) =>
      servedFingerprint(node.advertise, node.apiPort, this.context.timeoutMs).then(
        (shown) => shown === fingerprint,
        () => false,
      );
    await pollFor(
      async () => {
        const others = memberNodes(this.context.state()).filter(
          (node) => node.id !== self && node.status === "ready",
        );
        return (await Promise.all(others.map(shows))).every(Boolean);
      },
      SPREAD_MS,
      SPREAD_POLL_MS,
    );
  }

  /** Saves `credentials` as this node's and serves them, in the crash-safe order above. */
  async #save(credentials: ClusterCredentials): Promise<void> {
    const next = hold(credentials);
    if (this.#staged?.credentials.token !== next.credentials.token) {
      await writeStaged(this.dataDir, next.credentials);
      this.#staged = next;
    }
    await writeSecretFile(tlsKeyPath(this.dataDir), credentials.identity.keyPem);
    await writeSecretFile(tlsCertPath(this.dataDir), credentials.identity.certPem);
    await writeSecretFile(tokenPath(this.dataDir), `${next.credentials.token}\n`);
    // Served once all three are saved: a node that shows the new certificate (which is what
    // the leader waits for, see #spread) already has the token the local CLI reads.
    this.#held = next;
    this.#serve(credentials.identity);
    await rm(stagedPath(this.dataDir), { force: true });
    this.#staged = undefined;
  }
}

async function writeStaged(dataDir: string, credentials: ClusterCredentials): Promise<void> {
  const { token, identity } = credentials;
  await writeSecretFile(stagedPath(dataDir), `${JSON.stringify({ token, tls: identity })}\n`);
}

async function readStaged(dataDir: string): Promise<ClusterCredentials> {
  const text = await readSecretFile(stagedPath(dataDir));
  try {
    const { token, tls } = JSON.parse(text) as TokenShareResponse;
    return { token: String(token), identity: { certPem: tls.certPem, keyPem: tls.keyPem } };
  } catch {
    throw new Error(
      `${stagedPath(dataDir)} is not a staged rotation: remove it, and the node fetches the current token and identity from a member`,
    );
  }
}
