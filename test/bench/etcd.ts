/**
 * etcd 3.4 (Debian's /usr/bin/etcd) as test/bench/raft-vs-etcd.ts drives it: three members on
 * 127.0.0.1 whose peers authenticate each other with mutual TLS (a throwaway CA and one
 * certificate per member, made with openssl in the work dir), heartbeat 100 ms, a given election
 * timeout, and `--snapshot-count` set to Mill's snapshot interval. A write is one gRPC KV.Put
 * (the etcd3 npm client over @grpc/grpc-js, one HTTP/2 connection to the leader, no retries):
 * raft, then the MVCC store on bbolt.
 * Owns: the certificates, launching the members, their gRPC client. Must not touch: the
 * measurement (raft-vs-etcd.ts).
 */

import { execFileSync, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { noop } from "cockatiel";
import { Etcd3 } from "etcd3";
import { eventually } from "../e2e/harness.ts";
import { HOST, type KvSystem, logTo, type Member, makeMembers, VALUE } from "./kv-system.ts";

export const ETCD = "/usr/bin/etcd";

/** Mill's driver snapshots every 10,000 applied entries (lib/raft/driver.ts, `snapshotEvery`). */
const SNAPSHOT_COUNT = 10_000;

export interface PeerCertificates {
  readonly ca: string;
  /** Certificate and key files of member `id` (1-3). */
  member(id: number): { cert: string; key: string };
}

/** A P-256 CA and a certificate per member for 127.0.0.1, usable as TLS server and client. */
export function makePeerCertificates(dir: string): PeerCertificates {
  // Every argument is free of spaces, so each command is written as one line.
  const openssl = (command: string) =>
    execFileSync("openssl", command.split(" "), { cwd: dir, stdio: "pipe" });
  writeFileSync(
    join(dir, "peer.ext"),
    "subjectAltName=IP:127.0.0.1\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
  );
  openssl("ecparam -name prime256v1 -genkey -noout -out ca.key");
  openssl("req -x509 -new -key ca.key -sha256 -days 2 -subj /CN=bench-ca -out ca.crt");
  for (const id of [1, 2, 3]) {
    openssl(`ecparam -name prime256v1 -genkey -noout -out m${id}.key`);
    openssl(`req -new -key m${id}.key -subj /CN=m${id} -out m${id}.csr`);
    openssl(
      `x509 -req -in m${id}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -sha256 -extfile peer.ext -out m${id}.crt`,
    );
  }
  return {
    ca: join(dir, "ca.crt"),
    member: (id) => ({ cert: join(dir, `m${id}.crt`), key: join(dir, `m${id}.key`) }),
  };
}

/** GET /version on a member's peer port over TLS; the status, or the error that stopped it. */
function peerVersion(
  member: Member,
  certificates: PeerCertificates,
  clientCertificate?: { cert: string; key: string },
): Promise<string> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: HOST,
        port: member.peerPort,
        path: "/version",
        ca: readFileSync(certificates.ca),
        ...(clientCertificate && {
          cert: readFileSync(clientCertificate.cert),
          key: readFileSync(clientCertificate.key),
        }),
        timeout: 5000,
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(`HTTP ${res.statusCode}`));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (error) => resolve(`error: ${error.message}`));
    req.end();
  });
}

/**
 * The pairing the benchmark claims: a peer port answers a member's certificate and refuses a
 * client without one.
 */
async function checkPeersAuthenticate(member: Member, certificates: PeerCertificates) {
  const member2 = await peerVersion(member, certificates, certificates.member(2));
  const stranger = await peerVersion(member, certificates);
  if (member2 !== "HTTP 200" || !/bad certificate|certificate required/.test(stranger))
    throw new Error(
      `etcd's peer port does not authenticate: with a member certificate ${member2}, without one ${stranger}`,
    );
}

/** A member id of 0 (or none, should the client leave a zero out) means "no leader". */
const hasLeader = (status: { leader?: string }) =>
  status.leader !== undefined && status.leader !== "" && status.leader !== "0";

/** A gRPC client of one member that never retries and never routes around a failure. */
function clientOf(member: Member): Etcd3 {
  return new Etcd3({
    hosts: `http://${HOST}:${member.clientPort}`,
    faultHandling: { host: () => noop, global: noop },
  });
}

export async function etcdSystem(
  work: string,
  options: { name: string; electionMs: number; certificates: PeerCertificates },
): Promise<KvSystem> {
  const members = await makeMembers();
  const { name, electionMs, certificates } = options;
  const tag = `etcd-${electionMs}`;
  const cluster = members.map((m) => `m${m.id}=https://${HOST}:${m.peerPort}`).join(",");
  const controls = new Map<Member, Etcd3>();
  const control = (m: Member) => {
    const client = controls.get(m) ?? clientOf(m);
    controls.set(m, client);
    return client;
  };
  const status = (m: Member) => control(m).maintenance.status({ deadline: Date.now() + 1000 });
  const system: KvSystem = {
    name,
    members,
    launch(m) {
      // A relaunched member gets a fresh control connection.
      controls.get(m)?.close();
      controls.delete(m);
      const log = logTo(work, `${tag}-${m.id}`);
      const client = `http://${HOST}:${m.clientPort}`;
      const peer = `https://${HOST}:${m.peerPort}`;
      const own = certificates.member(m.id);
      const flags = {
        name: `m${m.id}`,
        "data-dir": join(work, `${tag}-${m.id}`),
        "listen-client-urls": client,
        "advertise-client-urls": client,
        "listen-peer-urls": peer,
        "initial-advertise-peer-urls": peer,
        "initial-cluster": cluster,
        "initial-cluster-state": "new",
        "initial-cluster-token": tag,
        "peer-cert-file": own.cert,
        "peer-key-file": own.key,
        "peer-trusted-ca-file": certificates.ca,
        "peer-client-cert-auth": "true",
        "heartbeat-interval": "100",
        "election-timeout": `${electionMs}`,
        "snapshot-count": `${SNAPSHOT_COUNT}`,
        logger: "zap",
        "log-level": "warn",
      };
      const args = Object.entries(flags).map(([flag, value]) => `--${flag}=${value}`);
      return spawn(ETCD, args, { stdio: ["ignore", log, log] });
    },
    async form() {
      await eventually(`an ${name} leader`, () => system.findLeader(), 30_000);
      await checkPeersAuthenticate(members[0]!, certificates);
    },
    async findLeader() {
      for (const m of members.filter((x) => x.process)) {
        const s = await status(m).catch(() => undefined);
        if (s && hasLeader(s) && s.leader === s.header.member_id) return m;
      }
      return undefined;
    },
    async state(m) {
      const s = await status(m);
      return { term: Number(s.header.raft_term), hasLeader: hasLeader(s) };
    },
    writer(m, _concurrency, timeoutMs) {
      // One HTTP/2 connection carries every concurrent call, as etcd's own clients do.
      const client = clientOf(m);
      return {
        async put(key) {
          await client
            .put(key)
            .value(VALUE)
            .options({ deadline: Date.now() + timeoutMs })
            .exec();
        },
        close: () => client.close(),
      };
    },
    close() {
      for (const client of controls.values()) client.close();
      controls.clear();
    },
  };
  return system;
}
