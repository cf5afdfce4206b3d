/**
 * This node's copy of the cluster token (DATA_DIR/token, 0600), kept equal to the committed token
 * hash so that local `mill status` keeps working after `mill token rotate`.
 * Owns: DATA_DIR/token and DATA_DIR/token.next, and asking members for a rotated token.
 * Must not touch: how members are reached (member-client.ts), the API routes (lib/api/token.ts).
 *
 * The Raft log holds only the token's hash. The leader that rotates stages the new token in
 * token.next before proposing, and promotes it once the hash is applied; every other node, on
 * seeing a hash its file does not match, asks members (the leader first) over the internal API and
 * accepts only a token whose secret has the committed hash and whose fingerprint is the cluster's.
 */

import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { TokenCopy } from "../api/deps.ts";
import type { TokenShareResponse } from "../api/wire.ts";
import { type ClusterState, memberNodes } from "../cluster/state.ts";
import { readSecretFile, writeSecretFile } from "../identity/files.ts";
import { hashSecret, parseToken } from "../identity/token.ts";
import type { NodeId } from "../raft/types.ts";
import { tokenPath } from "./config.ts";
import { type MemberIdentity, postToMember } from "./member-client.ts";

const stagedPath = (dataDir: string) => join(dataDir, "token.next");

interface HeldToken {
  readonly token: string;
  readonly hash: string;
  readonly fingerprint: string;
}

function hold(text: string): HeldToken {
  const token = text.trim();
  const { secret, fingerprint } = parseToken(token);
  return { token, hash: hashSecret(secret), fingerprint };
}

/** What one sync did: nothing to do, saved the committed token, or found no member holding it. */
export type SyncOutcome = "current" | "updated" | "unavailable";

export class TokenKeeper implements TokenCopy {
  #held: HeldToken;
  #staged: HeldToken | undefined;
  #syncing = false;

  private constructor(
    readonly dataDir: string,
    held: HeldToken,
    staged: HeldToken | undefined,
  ) {
    this.#held = held;
    this.#staged = staged;
  }

  /** Opens the node's token files; `token` is the content of DATA_DIR/token. */
  static async open(dataDir: string, token: string): Promise<TokenKeeper> {
    const staged = existsSync(stagedPath(dataDir))
      ? hold(await readSecretFile(stagedPath(dataDir)))
      : undefined;
    return new TokenKeeper(dataDir, hold(token), staged);
  }

  current(tokenHash: string): string | undefined {
    if (this.#held.hash === tokenHash) return this.#held.token;
    return this.#staged?.hash === tokenHash ? this.#staged.token : undefined;
  }

  async stage(token: string): Promise<void> {
    const staged = hold(token);
    await writeSecretFile(stagedPath(this.dataDir), `${staged.token}\n`);
    this.#staged = staged;
  }

  /**
   * Brings DATA_DIR/token to the committed `state.tokenHash`: from the staged token, else from
   * the first member (leader first) that hands over a token with that hash. One at a time.
   */
  async sync(
    state: ClusterState,
    leader: NodeId,
    member: MemberIdentity,
    timeoutMs: number,
  ): Promise<SyncOutcome> {
    const { tokenHash } = state;
    if (tokenHash === "" || this.#held.hash === tokenHash) return "current";
    if (this.#syncing) return "unavailable";
    this.#syncing = true;
    try {
      let found = this.current(tokenHash);
      const others = memberNodes(state)
        .filter((node) => node.id !== member.nodeId)
        .sort((a, b) => Number(b.id === leader) - Number(a.id === leader));
      for (const node of others) {
        if (found !== undefined) break;
        found = await postToMember(member, node, "/v1/internal/token", { tokenHash }, timeoutMs)
          .then((reply) =>
            reply.status === 200
              ? this.#accept((JSON.parse(reply.text) as TokenShareResponse).token, tokenHash)
              : undefined,
          )
          .catch(() => undefined);
      }
      if (found === undefined) return "unavailable";
      await writeSecretFile(tokenPath(this.dataDir), `${found}\n`);
      this.#held = hold(found);
      if (this.#staged) {
        await rm(stagedPath(this.dataDir), { force: true });
        this.#staged = undefined;
      }
      return "updated";
    } finally {
      this.#syncing = false;
    }
  }

  /** `token` if it is well formed, has the committed hash and pins this cluster's identity. */
  #accept(token: unknown, tokenHash: string): string | undefined {
    try {
      const offered = hold(String(token));
      return offered.hash === tokenHash && offered.fingerprint === this.#held.fingerprint
        ? offered.token
        : undefined;
    } catch {
      return undefined;
    }
  }
}
