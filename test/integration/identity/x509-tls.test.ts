/**
 * The generated identity in real TLS: OpenSSL's own tools read and verify it, and Node's TLS
 * server serves it to a client that validates it as its only trust anchor.
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { connect, createServer, type TLSSocket } from "node:tls";
import { createClusterIdentity } from "../../../lib/identity/x509.ts";

const identity = createClusterIdentity();

function hasOpenssl(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("cluster certificate in TLS", () => {
  it("is read and verified by the openssl binary", { skip: !hasOpenssl() && "no openssl" }, () => {
    const dir = mkdtempSync(join(tmpdir(), "mill-x509-"));
    try {
      const certFile = join(dir, "cert.pem");
      writeFileSync(certFile, identity.certPem);
      const text = execFileSync("openssl", ["x509", "-noout", "-text", "-in", certFile], {
        encoding: "utf8",
      });
      for (const line of [
        "Version: 3 (0x2)",
        "Signature Algorithm: ecdsa-with-SHA256",
        "Issuer: CN = mill-cluster",
        "Subject: CN = mill-cluster",
        "NIST CURVE: P-256",
        "CA:FALSE",
        "Digital Signature",
        "TLS Web Server Authentication, TLS Web Client Authentication",
      ]) {
        assert.ok(text.includes(line), `openssl output lacks "${line}"`);
      }
      const verdict = execFileSync("openssl", ["verify", "-CAfile", certFile, certFile], {
        encoding: "utf8",
      });
      assert.equal(verdict.trim(), `${certFile}: OK`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("is served by Node's TLS server and validates when trusted as the only CA", async () => {
    const server = createServer({ key: identity.keyPem, cert: identity.certPem }, (socket) =>
      socket.end("hello"),
    );
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as { port: number };
    try {
      const socket: TLSSocket = connect({
        host: "127.0.0.1",
        port,
        ca: identity.certPem,
        // The name is not the address; Mill pins instead of checking names.
        checkServerIdentity: () => undefined,
      });
      await once(socket, "secureConnect");
      assert.equal(socket.authorized, true, String(socket.authorizationError));
      assert.equal(socket.getProtocol(), "TLSv1.3");
      const [data] = await once(socket, "data");
      assert.equal(String(data), "hello");
      socket.destroy();
    } finally {
      server.close();
      await once(server, "close");
    }
  });

  it("with subjectAltNames, verifies by name and by address with the default checks (as curl --cacert does)", async () => {
    const named = createClusterIdentity({ altNames: ["mill-cluster", "127.0.0.1"] });
    const server = createServer({ key: named.keyPem, cert: named.certPem }, (socket) =>
      socket.end("hello"),
    );
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as { port: number };
    /** The verdict of a client that trusts `ca` and asks for `servername` (or the address). */
    const verdict = async (ca: string, servername?: string) => {
      const socket = connect({
        host: "127.0.0.1",
        port,
        ca,
        ...(servername ? { servername } : {}),
      });
      const outcome = await new Promise<string | undefined>((resolve) => {
        socket.once("secureConnect", () => resolve("verified"));
        socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code));
      });
      socket.destroy();
      return outcome;
    };
    try {
      assert.equal(await verdict(named.certPem, "mill-cluster"), "verified");
      assert.equal(await verdict(named.certPem), "verified");
      // The attacker's side: another name, or another cluster's certificate, is refused.
      assert.equal(await verdict(named.certPem, "other.example"), "ERR_TLS_CERT_ALTNAME_INVALID");
      assert.equal(await verdict(identity.certPem, "mill-cluster"), "DEPTH_ZERO_SELF_SIGNED_CERT");
    } finally {
      server.close();
      await once(server, "close");
    }
  });

  it("names the cluster and the given addresses as subjectAltNames, IPv6 included", {
    skip: !hasOpenssl() && "no openssl",
  }, () => {
    const dir = mkdtempSync(join(tmpdir(), "mill-x509-"));
    try {
      const certFile = join(dir, "cert.pem");
      const named = createClusterIdentity({ altNames: ["mill-cluster", "10.0.0.1", "fd00::1"] });
      writeFileSync(certFile, named.certPem);
      const text = execFileSync(
        "openssl",
        ["x509", "-noout", "-ext", "subjectAltName", "-in", certFile],
        {
          encoding: "utf8",
        },
      );
      assert.match(
        text,
        /DNS:mill-cluster, IP Address:10\.0\.0\.1, IP Address:FD00:0:0:0:0:0:0:1/i,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
