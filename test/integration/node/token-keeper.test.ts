/**
 * TokenKeeper on a real data dir: a rotation staged, committed, saved and served; a rotation
 * whose commit fails leaves the saved pair alone; and starts after a crash at each step of a save
 * find token and identity agreeing again, or say in one line what is wrong.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { type ClusterState, emptyState } from "../../../lib/cluster/state.ts";
import { writeSecretFile } from "../../../lib/identity/files.ts";
import { fingerprintOfPem } from "../../../lib/identity/fingerprint.ts";
import {
  type ClusterCredentials,
  createCredentials,
  tokenHashOf,
} from "../../../lib/identity/rotation.ts";
import type { ClusterIdentity } from "../../../lib/identity/x509.ts";
import type { MemberIdentity } from "../../../lib/node/member-client.ts";
import { TokenKeeper } from "../../../lib/node/token-keeper.ts";

const root = mkdtempSync(join(tmpdir(), "mill-token-keeper-"));
after(() => rmSync(root, { recursive: true, force: true }));

const old = createCredentials("127.0.0.1");
const next = createCredentials("127.0.0.1");
let dirs = 0;

/** A data dir holding `files` (token, tls.crt, tls.key) and, if given, a staged pair. */
async function dataDir(files: ClusterCredentials, staged?: ClusterCredentials): Promise<string> {
  const dir = join(root, `node-${++dirs}`);
  await writeSecretFile(join(dir, "token"), `${files.token}\n`);
  await writeSecretFile(join(dir, "tls.crt"), files.identity.certPem);
  await writeSecretFile(join(dir, "tls.key"), files.identity.keyPem);
  if (staged) {
    const text = JSON.stringify({ token: staged.token, tls: staged.identity });
    await writeSecretFile(join(dir, "rotation.next"), text);
  }
  return dir;
}

function saved(dir: string): ClusterCredentials {
  const read = (file: string) => readFileSync(join(dir, file), "utf8");
  return {
    token: read("token").trim(),
    identity: { certPem: read("tls.crt"), keyPem: read("tls.key") },
  };
}

/** A node alone in its cluster, whose committed state the test sets. */
function alone(state: { current: ClusterState }) {
  return {
    advertise: "127.0.0.1",
    state: () => state.current,
    leader: () => 1,
    member: () => ({ nodeId: 1 }) as MemberIdentity,
    timeoutMs: 1_000,
  };
}

const committed = (pair: ClusterCredentials): ClusterState => ({
  ...emptyState(),
  tokenHash: tokenHashOf(pair.token),
  tlsFingerprint: fingerprintOfPem(pair.identity.certPem),
});

/** A keeper opened on a data dir holding `pair`, committed, recording what it serves. */
async function serving(pair: ClusterCredentials) {
  const dir = await dataDir(pair);
  const state = { current: committed(pair) };
  const keeper = await TokenKeeper.open(dir, pair, alone(state));
  const served: ClusterIdentity[] = [];
  keeper.serveWith((identity) => served.push(identity));
  return { dir, state, keeper, served };
}

describe("TokenKeeper", () => {
  test("a rotation is staged before its commit, then saved and served", async () => {
    const { dir, state, keeper, served } = await serving(old);
    let stagedAtCommit = false;
    const { next: made, proposed } = await keeper.rotate(async (pair) => {
      stagedAtCommit = existsSync(join(dir, "rotation.next"));
      assert.deepEqual(saved(dir), old, "nothing saved before the commit");
      state.current = committed(pair);
      return "committed";
    });
    assert.equal(proposed, "committed");
    assert.equal(stagedAtCommit, true);
    assert.deepEqual(saved(dir), made);
    assert.deepEqual(served, [made.identity]);
    assert.equal(keeper.fingerprint(), fingerprintOfPem(made.identity.certPem));
    assert.equal(existsSync(join(dir, "rotation.next")), false);
    assert.equal(await keeper.sync(), "current");
  });

  test("a rotation that does not commit changes nothing saved or served", async () => {
    const { dir, state, keeper, served } = await serving(old);
    const { next: made } = await keeper.rotate(async () => "no quorum");
    assert.deepEqual(saved(dir), old);
    assert.deepEqual(served, []);
    assert.equal(keeper.fingerprint(), fingerprintOfPem(old.identity.certPem));
    // Staged still: if the entry commits after all, the node saves it and can hand it on.
    assert.deepEqual(keeper.current(tokenHashOf(made.token)), made);
    state.current = committed(made);
    assert.equal(await keeper.sync(), "updated");
    assert.deepEqual(saved(dir), made);
  });

  test("a start after a crash between the key and the certificate finishes the save", async () => {
    const torn = {
      token: old.token,
      identity: { certPem: old.identity.certPem, keyPem: next.identity.keyPem },
    };
    const dir = await dataDir(torn, next);
    const keeper = await TokenKeeper.open(dir, torn, alone({ current: committed(next) }));
    assert.deepEqual(saved(dir), next);
    assert.deepEqual(keeper.identity(), next.identity);
    assert.equal(existsSync(join(dir, "rotation.next")), false);
  });

  test("a start after a crash between the certificate and the token finishes the save", async () => {
    const torn = { token: old.token, identity: next.identity };
    const dir = await dataDir(torn, next);
    const keeper = await TokenKeeper.open(dir, torn, alone({ current: committed(next) }));
    assert.deepEqual(saved(dir), next);
    assert.equal(await keeper.sync(), "current");
  });

  test("a start after a crash before rotation.next was removed drops it", async () => {
    const dir = await dataDir(next, next);
    await TokenKeeper.open(dir, next, alone({ current: committed(next) }));
    assert.equal(existsSync(join(dir, "rotation.next")), false);
  });

  test("a staged pair waiting for its commit survives a restart and is saved once committed", async () => {
    const dir = await dataDir(old, next);
    const state = { current: committed(old) };
    const keeper = await TokenKeeper.open(dir, old, alone(state));
    assert.equal(await keeper.sync(), "current");
    assert.deepEqual(saved(dir), old);
    state.current = committed(next);
    assert.equal(await keeper.sync(), "updated");
    assert.deepEqual(saved(dir), next);
  });

  test("token and identity that disagree with nothing to explain it: one line, nothing changed", async () => {
    const torn = { token: old.token, identity: next.identity };
    const dir = await dataDir(torn);
    await assert.rejects(TokenKeeper.open(dir, torn, alone({ current: committed(old) })), {
      message: new RegExp(
        `^${dir}: the saved token and TLS identity do not belong together \\(.*\\) and no staged rotation explains it; copy token, tls.crt and tls.key from another member's data dir$`,
      ),
    });
    assert.deepEqual(saved(dir), torn);
  });
});
