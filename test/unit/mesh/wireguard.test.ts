import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { explainStartFailure, WIREGUARD_RESTART_POLICY } from "../../../lib/mesh/wireguard.ts";
import { RestartBackoff } from "../../../lib/shared/backoff.ts";

describe("wireguard supervisor: backoff", () => {
  it("doubles from 0.2 s to 10 s while the process keeps dying young", () => {
    const backoff = new RestartBackoff(WIREGUARD_RESTART_POLICY);
    const delays = Array.from({ length: 9 }, () => backoff.next(1000));
    assert.deepEqual(delays, [200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000]);
  });

  it("starts over after a stable run", () => {
    const { stableMs } = WIREGUARD_RESTART_POLICY;
    const backoff = new RestartBackoff(WIREGUARD_RESTART_POLICY);
    for (let i = 0; i < 8; i++) backoff.next(0);
    assert.equal(backoff.next(stableMs - 1), 10_000);
    assert.equal(backoff.next(stableMs), 200);
    assert.equal(backoff.next(0), 400);
  });
});

describe("wireguard supervisor: start-up failures", () => {
  const banner = "┌───┐\n│ Running wireguard-go is not required │\n└───┘\n";
  const explain = (line: string) => explainStartFailure("mill0", `${banner}${line}\n`, 1);

  it("turns each known wireguard-go error into its fix", () => {
    assert.match(
      explain("ERROR: (mill0) 2025/01/01 Failed to create TUN device: operation not permitted"),
      /CAP_NET_ADMIN is missing; .*--cap-add NET_ADMIN/,
    );
    assert.match(
      explain(
        'ERROR: (mill0) 2025/01/01 Failed to create TUN device: CreateTUN("mill0") failed; /dev/net/tun does not exist',
      ),
      /\/dev\/net\/tun does not exist; .*--device/,
    );
    assert.match(
      explain("ERROR: (mill0) 2025/01/01 UAPI listen error: permission denied"),
      /cannot create its UAPI socket in \/var\/run\/wireguard/,
    );
    assert.match(
      explain("ERROR: (mill0) 2025/01/01 Failed to create TUN device: device or resource busy"),
      /name is in use; stop the other/,
    );
    assert.match(
      explain("ERROR: (mill0) 2025/01/01 UAPI listen error: unix socket in use"),
      /name is in use/,
    );
  });

  it("quotes an unknown error in one line", () => {
    const message = explain("ERROR: (mill0) something new");
    assert.equal(
      message,
      "wireguard-go could not start mill0: it exited with code 1 (ERROR: (mill0) something new)",
    );
    assert.equal(
      explainStartFailure("mill0", "", 2),
      "wireguard-go could not start mill0: it exited with code 2 (no output)",
    );
  });
});
