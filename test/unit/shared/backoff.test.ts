import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { doublingDelays, RestartBackoff } from "../../../lib/shared/backoff.ts";

describe("restart back-off", () => {
  it("doubles up to the cap and ends on it", () => {
    assert.deepEqual(doublingDelays(200, 2000), [200, 400, 800, 1600, 2000]);
    assert.deepEqual(doublingDelays(1000, 1000), [1000]);
  });

  it("walks the delays, repeats the last, and starts over after a stable run", () => {
    const backoff = new RestartBackoff({ delaysMs: [1, 5, 30], stableMs: 100 });
    assert.deepEqual(
      [0, 99, 10, 0].map((uptime) => backoff.next(uptime)),
      [1, 5, 30, 30],
    );
    assert.equal(backoff.next(100), 1);
    assert.equal(backoff.next(0), 5);
  });
});
