import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { dataDirRestorer } from "../../../lib/node/config.ts";

const scratch = mkdtempSync(join(tmpdir(), "mill-config-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** What a failed init leaves before it restores: its files, and a folder with one inside. */
function halfMade(dir: string): void {
  mkdirSync(join(dir, "raft"), { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, "node.json"), "{}");
  writeFileSync(join(dir, "raft", "log"), "entries");
}

describe("putting a data dir back after a failed first init or join", () => {
  test("a dir that did not exist is removed again", async () => {
    const dir = join(scratch, "absent");
    const restore = dataDirRestorer(dir);
    halfMade(dir);
    await restore();
    assert.equal(existsSync(dir), false);
  });

  test("a dir that was empty (made by the operator, a mount point) is emptied and kept", async () => {
    const dir = join(scratch, "empty");
    mkdirSync(dir, { mode: 0o700 });
    const restore = dataDirRestorer(dir);
    halfMade(dir);
    await restore();
    assert.deepEqual(readdirSync(dir), []);
  });

  test("a dir that held anything (a rejoin's node) is left as it is", async () => {
    const dir = join(scratch, "held");
    mkdirSync(dir, { mode: 0o700 });
    writeFileSync(join(dir, "node.json"), "{}");
    const restore = dataDirRestorer(dir);
    writeFileSync(join(dir, "token"), "t");
    await restore();
    assert.deepEqual(readdirSync(dir).sort(), ["node.json", "token"]);
  });
});
