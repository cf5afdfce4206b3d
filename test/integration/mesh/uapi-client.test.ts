import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { base64KeyToHex, generateKeyPair } from "../../../lib/mesh/keys.ts";
import { type DeviceConfig, UapiClient } from "../../../lib/mesh/uapi.ts";

let seed = 40;
const pair = () => generateKeyPair(() => new Uint8Array(32).fill(++seed));
const self = pair();
const peer = pair().publicKey;
const config: DeviceConfig = {
  privateKey: self.privateKey,
  listenPort: 51820,
  peers: [{ publicKey: peer, endpoint: "192.168.3.2:51820", allowedIps: ["10.99.0.2/32"] }],
};
const goodState = [
  `private_key=${base64KeyToHex(self.privateKey)}`,
  "listen_port=51820",
  `public_key=${base64KeyToHex(peer)}`,
  "endpoint=192.168.3.2:51820",
  "persistent_keepalive_interval=25",
  "allowed_ip=10.99.0.2/32",
];

/** A stand-in for wireguard-go's socket: `answer` decides the reply to each request. */
describe("UAPI client over a unix socket", () => {
  let dir: string;
  let server: Server;
  let answer: (request: string, socket: Socket) => void;
  const requests: string[] = [];
  const client = () => new UapiClient(join(dir, "wg-test.sock"), 2000);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "mill-uapi-"));
    server = createServer((socket) => {
      let buffer = "";
      socket.setEncoding("utf8").on("data", (chunk: string) => {
        buffer += chunk;
        const end = buffer.indexOf("\n\n");
        if (end < 0) return;
        const request = buffer.slice(0, end + 2);
        buffer = buffer.slice(end + 2);
        requests.push(request);
        answer(request, socket);
      });
    });
    await new Promise<void>((resolve) => server.listen(join(dir, "wg-test.sock"), resolve));
  });

  after(async () => {
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  it("reads the device, sets the whole state and verifies it with a get", async () => {
    requests.length = 0;
    let gets = 0;
    // A fresh device first (no key, no peers), then the state that was set.
    answer = (request, socket) =>
      socket.write(
        request.startsWith("get=1")
          ? gets++ === 0
            ? "listen_port=0\nerrno=0\n\n"
            : `${goodState.join("\n")}\nerrno=0\n\n`
          : "errno=0\n\n",
      );
    const state = await client().set(config);
    assert.equal(state.peers[0]!.publicKey, peer);
    assert.equal(requests.length, 3);
    assert.equal(requests[0], "get=1\n\n");
    assert.match(requests[1]!, /^set=1\nprivate_key=[0-9a-f]{64}\nlisten_port=51820\npublic_key=/);
    assert.equal(requests[2], "get=1\n\n");
  });

  it("names the request when wireguard-go answers with a non-zero errno", async () => {
    answer = (request, socket) =>
      socket.write(request.startsWith("get=1") ? "listen_port=0\nerrno=0\n\n" : "errno=-22\n\n");
    await assert.rejects(client().set(config), (error: Error) => {
      assert.match(
        error.message,
        /^UAPI set \(listen_port=51820, 1 peer\(s\)\) on .*wg-test\.sock failed with errno=-22/,
      );
      assert.ok(
        !error.message.includes(self.privateKey) &&
          !error.message.includes(base64KeyToHex(self.privateKey)),
      );
      return true;
    });
    answer = (_request, socket) => socket.write("errno=-22\n\n");
    await assert.rejects(client().get(), /UAPI get on .* failed with errno=-22/);
  });

  it("fails when the device does not hold what was set", async () => {
    answer = (request, socket) =>
      socket.write(
        request.startsWith("get=1")
          ? `${goodState.slice(0, 2).join("\n")}\nerrno=0\n\n`
          : "errno=0\n\n",
      );
    await assert.rejects(
      client().set(config),
      new RegExp(`did not take: peer ${peer.replace(/[+/]/g, "\\$&")} is missing`),
    );
  });

  it("fails when the socket closes without a reply", async () => {
    answer = (_request, socket) => socket.end();
    await assert.rejects(client().get(), /closed the UAPI socket .* without replying to get/);
  });

  it("fails clearly when nothing listens", async () => {
    await assert.rejects(
      new UapiClient(join(dir, "absent.sock")).get(),
      /cannot reach the WireGuard UAPI socket .*absent\.sock for get \(ENOENT\): is wireguard-go running/,
    );
    assert.equal(await new UapiClient(join(dir, "absent.sock")).ping(), false);
  });

  it("sends nothing when the config is invalid", async () => {
    requests.length = 0;
    await assert.rejects(
      client().set({ ...config, peers: [{ ...config.peers[0]!, endpoint: "host:1" }] }),
      /host names/,
    );
    assert.equal(requests.length, 0);
  });
});
