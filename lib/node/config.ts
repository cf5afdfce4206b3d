/**
 * A node's saved identity in its data dir: what `init`/`join` write and `agent` reads to come back
 * after a restart. Every file is 0600 in a 0700 directory; secrets live in their own files.
 * Owns: the data dir's layout. Must not touch: the Raft log (lib/raft/storage owns DATA_DIR/raft).
 */
import { existsSync, readdirSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { ClusterInit, NodeRegister } from "../cluster/commands.ts";
import type { MeshMode } from "../cluster/validate.ts";
import type { PeerEntry } from "../cluster/views.ts";
import { ensureSecretDir, readSecretFile, writeSecretFile } from "../identity/files.ts";
import { realChainProblem } from "../platform/path-chain.ts";

export interface NodeConfig {
  readonly version: 1;
  readonly clusterId: string;
  readonly nodeId: number;
  readonly name: string;
  readonly advertise: string;
  readonly apiPort: number;
  readonly raftPort: number;
  readonly wgPort: number;
  readonly mesh: MeshMode;
  readonly meshInterface: string;
  /** The node's mesh address with prefix ("10.99.0.2/16"); unused with --mesh none. */
  readonly meshInterfaceAddress: string;
  /** The members as the join answered, until the replicated state has them (Raft and mesh peers). */
  readonly seeds: readonly PeerEntry[];
  /** Written by `init` until its first entries are committed (then removed). */
  readonly bootstrap?: { readonly init: ClusterInit; readonly register: NodeRegister };
}

export interface NodeSecrets {
  /** The full join token, kept so local `mill status` needs no flags. */
  readonly token: string;
  /** Authenticates this node on other nodes' internal API (see lib/api/member.ts). */
  readonly memberSecret: string;
  readonly tlsCertPem: string;
  readonly tlsKeyPem: string;
  /** base64 x25519 private key; never leaves this node. */
  readonly wgPrivateKey: string;
  /** This node's own TLS identity for node-to-node mutual TLS (lib/identity/node-key.ts). */
  readonly nodeCertPem: string;
  /** Its private key; never leaves this node. */
  readonly nodeKeyPem: string;
}

const FILES: Record<keyof NodeSecrets, string> = {
  token: "token",
  memberSecret: "member.secret",
  tlsCertPem: "tls.crt",
  tlsKeyPem: "tls.key",
  wgPrivateKey: "wg.key",
  nodeCertPem: "node.crt",
  nodeKeyPem: "node.key",
};

export const raftDir = (dataDir: string) => join(dataDir, "raft");
/** The full cluster token, rewritten by the node when a rotation commits (token-keeper.ts). */
export const tokenPath = (dataDir: string) => join(dataDir, FILES.token);
/**
 * How to put `dataDir` back as a first `init` or `join` found it, should the command fail: a dir
 * that did not exist is removed again; one that was empty is emptied, the directory itself kept
 * (an operator may have made it, as a mount point or with its own owner); one that held anything
 * is left alone (a rejoin keeps its node).
 */
export function dataDirRestorer(dataDir: string): () => Promise<void> {
  let entries: string[];
  try {
    entries = readdirSync(dataDir);
  } catch {
    if (existsSync(dataDir)) return async () => {};
    return () => rm(dataDir, { recursive: true, force: true });
  }
  if (entries.length > 0) return async () => {};
  return async () => {
    for (const entry of await readdir(dataDir).catch(() => [])) {
      await rm(join(dataDir, entry), { recursive: true, force: true });
    }
  };
}

/** The public TLS identity the token pins, rewritten with it (token-keeper.ts). */
export const tlsCertPath = (dataDir: string) => join(dataDir, FILES.tlsCertPem);
export const tlsKeyPath = (dataDir: string) => join(dataDir, FILES.tlsKeyPem);
const configPath = (dataDir: string) => join(dataDir, "node.json");

export function isInitialised(dataDir: string): boolean {
  return existsSync(configPath(dataDir));
}

export async function saveConfig(dataDir: string, config: NodeConfig): Promise<void> {
  await writeSecretFile(configPath(dataDir), `${JSON.stringify(config, null, 2)}\n`);
}

/** Creates the data dir (0700) and writes secrets first, so node.json marks a complete node. */
export async function saveNode(
  dataDir: string,
  config: NodeConfig,
  secrets: NodeSecrets,
): Promise<void> {
  checkDataDirParents(dataDir);
  await ensureSecretDir(dataDir);
  for (const [key, file] of Object.entries(FILES)) {
    await writeSecretFile(join(dataDir, file), secrets[key as keyof NodeSecrets]);
  }
  await saveConfig(dataDir, config);
}

export async function loadConfig(dataDir: string): Promise<NodeConfig> {
  if (!isInitialised(dataDir)) {
    throw new Error(
      `${dataDir} holds no Mill node: run mill init or mill join first, or pass --data-dir`,
    );
  }
  return JSON.parse(await readSecretFile(configPath(dataDir))) as NodeConfig;
}

export async function loadToken(dataDir: string): Promise<string> {
  return (await readSecretFile(tokenPath(dataDir))).trim();
}

/** Refuses a data dir that another user could replace through one of its parents. */
function checkDataDirParents(dataDir: string): void {
  const problem = realChainProblem(dataDir);
  if (problem) throw new Error(`data dir: ${problem}`);
}

export async function loadNode(
  dataDir: string,
): Promise<{ config: NodeConfig; secrets: NodeSecrets }> {
  checkDataDirParents(dataDir);
  const config = await loadConfig(dataDir);
  const secrets: Record<string, string> = {};
  for (const [key, file] of Object.entries(FILES)) {
    secrets[key] = await readSecretFile(join(dataDir, file));
  }
  return { config, secrets: secrets as unknown as NodeSecrets };
}
