/**
 * Node certificates for Raft tests and benchmarks that run the transport without the cluster
 * layer: one certificate per node id, and a TransportTls that knows them all (the cluster layer
 * does the same from the replicated records, lib/node/member-keys.ts).
 * Owns: test key material only.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fingerprintOfDer, fingerprintOfPem } from "../../../lib/identity/fingerprint.ts";
import { createNodeIdentity } from "../../../lib/identity/node-key.ts";
import type { ClusterIdentity } from "../../../lib/identity/x509.ts";
import type { TransportTls } from "../../../lib/raft/transport/transport.ts";
import type { NodeId } from "../../../lib/raft/types.ts";

export type Certificates = Map<NodeId, ClusterIdentity>;

export function memberCertificates(ids: readonly NodeId[]): Certificates {
  return new Map(ids.map((id) => [id, createNodeIdentity()]));
}

/** Node `self`'s TLS, trusting exactly the nodes in `certs` (add to it, and they count too). */
export function transportTls(certs: Certificates, self: NodeId): TransportTls {
  const own = certs.get(self);
  if (!own) throw new Error(`no certificate for node ${self}`);
  return {
    certPem: own.certPem,
    keyPem: own.keyPem,
    peerOf(certDer) {
      const fingerprint = fingerprintOfDer(certDer);
      for (const [id, cert] of certs) if (fingerprintOfPem(cert.certPem) === fingerprint) return id;
      return undefined;
    },
    isMember: (id) => certs.has(id),
  };
}

export function saveCertificates(dir: string, certs: Certificates): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const [id, cert] of certs) {
    writeFileSync(join(dir, `node-${id}.crt`), cert.certPem, { mode: 0o600 });
    writeFileSync(join(dir, `node-${id}.key`), cert.keyPem, { mode: 0o600 });
  }
}

export function loadCertificates(dir: string, ids: readonly NodeId[]): Certificates {
  return new Map(
    ids.map((id) => [
      id,
      {
        certPem: readFileSync(join(dir, `node-${id}.crt`), "utf8"),
        keyPem: readFileSync(join(dir, `node-${id}.key`), "utf8"),
      },
    ]),
  );
}
