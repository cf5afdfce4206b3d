import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { formatBytes, formatDuration } from "../../../lib/shared/format.ts";

const GiB = 1024 ** 3;

describe("human units", () => {
  test("memory in binary units with at most one decimal", () => {
    assert.deepEqual(
      [
        0,
        900,
        512 * 1024 ** 2,
        8 * GiB,
        7.5 * GiB,
        8_344_477_696,
        1024 ** 2 - 1,
        3 * 1024 ** 4,
      ].map(formatBytes),
      ["0", "900B", "512M", "8G", "7.5G", "7.8G", "1M", "3T"],
    );
  });

  test("durations", () => {
    assert.deepEqual([0, 12_345, 61_000, 120_000, 3_726_000].map(formatDuration), [
      "0s",
      "12s",
      "1m1s",
      "2m",
      "1h2m",
    ]);
  });
});
