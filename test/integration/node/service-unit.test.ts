/** The generated mill.service passes `systemd-analyze verify` (Debian's systemd package). */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { renderUnit } from "../../../lib/node/service.ts";

const scratch = mkdtempSync(join(tmpdir(), "mill-unit-verify-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** systemd-analyze verify's complaints about a unit text (it exits 0 on most of them). */
function verify(text: string): { status: number | null; stderr: string } {
  const path = join(scratch, "mill.service");
  writeFileSync(path, text);
  const result = spawnSync("systemd-analyze", ["verify", path], { encoding: "utf8" });
  assert.ok(!result.error, `systemd-analyze cannot run (apt-get install systemd): ${result.error}`);
  return { status: result.status, stderr: result.stderr.trim() };
}

// The unit must name an executable that exists: verify checks ExecStart's path.
const unit = renderUnit(process.execPath, "/var/lib/mill data");

test("the unit passes systemd-analyze verify without a warning", () => {
  assert.deepEqual(verify(unit), { status: 0, stderr: "" });
});

test("the check sees a broken unit (so the test above can fail)", () => {
  const broken = verify(unit.replace("Restart=always", "Restart=alwys"));
  assert.match(broken.stderr, /Failed to parse service restart specifier/);
  const missing = verify(renderUnit(join(scratch, "no-such-mill"), "/var/lib/mill"));
  assert.notEqual(missing.status, 0);
});
