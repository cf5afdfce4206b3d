/**
 * callMember against a real TLS server on 127.0.0.1 (`--mesh none`: pinned to the cluster's
 * identity) that refuses some calls: every refusal reaches the caller, and the node's log gets
 * the first one at once and no line per call.
 */

import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import type { NodeRecord } from "../../../lib/cluster/state.ts";
import { fingerprintOfPem } from "../../../lib/identity/fingerprint.ts";
import { createPinnedAgent } from "../../../lib/identity/pinned-client.ts";
import { createClusterIdentity } from "../../../lib/identity/x509.ts";
import { callMember, type MemberIdentity, RefusalLog } from "../../../lib/node/member-client.ts";

const identity = createClusterIdentity();
const server = createServer({ key: identity.keyPem, cert: identity.certPem }, (req, res) => {
  req.resume();
  const refused = req.url === "/v1/internal/heartbeat";
  res.writeHead(refused ? 401 : 200, { "content-type": "application/json" });
  res.end(
    JSON.stringify(refused ? { error: "unknown member or wrong member secret" } : { peers: [] }),
  );
});
const lines: string[] = [];
const pinned = createPinnedAgent(fingerprintOfPem(identity.certPem));
const self: MemberIdentity = {
  nodeId: 2,
  memberSecret: "a-member-secret",
  certificate: { certPem: identity.certPem, keyPem: identity.keyPem },
  mesh: "none",
  pinned,
  refusals: new RefusalLog((line) => lines.push(line)),
};
let leader: NodeRecord;

before(async () => {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  leader = { id: 1, name: "node-1", advertise: "127.0.0.1", apiPort: port } as NodeRecord;
});
after(() => {
  pinned.destroy();
  server.close();
});

test("a member's refusals reach the caller, and its log names the first one, once", async () => {
  for (let call = 0; call < 10; call++) {
    const reply = await callMember(self, leader, "POST", "/v1/internal/heartbeat", {}, 2_000);
    assert.equal(reply.status, 401);
  }
  const peers = await callMember(
    self,
    leader,
    "GET",
    "/v1/internal/peers?since=3",
    undefined,
    2_000,
  );
  assert.equal(peers.status, 200);
  assert.deepEqual(lines, [
    "internal API: node-1 (node 1) refused POST /v1/internal/heartbeat: unknown member or wrong member secret (HTTP 401)",
  ]);
});
