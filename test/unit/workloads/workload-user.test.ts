import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { chooseWorkloadUser, passwdEntry } from "../../../lib/workloads/workload-user.ts";

const BASE =
  "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const WITH_USER = `${BASE}mill-workload:x:998:997::/nonexistent:/usr/sbin/nologin\n`;

describe("the user workloads run as", () => {
  test("mill-workload when it exists", () => {
    assert.deepEqual(chooseWorkloadUser(0, WITH_USER), {
      user: { name: "mill-workload", uid: 998, gid: 997 },
      create: false,
    });
  });

  test("missing: create it first; still missing after that: nobody, said once", () => {
    assert.deepEqual(chooseWorkloadUser(0, BASE), { user: undefined, create: true });
    const fallback = chooseWorkloadUser(0, BASE, { created: true });
    assert.deepEqual(fallback.user, { name: "nobody", uid: 65534, gid: 65534 });
    assert.match(fallback.warning!, /no usable mill-workload user: workloads run as nobody/);
  });

  test("never root, even when passwd says mill-workload or nobody is uid 0", () => {
    const hostile = "mill-workload:x:0:0::/:/bin/sh\nnobody:x:0:0::/:/bin/sh\n";
    const choice = chooseWorkloadUser(0, hostile, { created: true });
    assert.deepEqual(choice.user, { name: "nobody", uid: 65534, gid: 65534 });
    assert.equal(chooseWorkloadUser(0, hostile).create, false);
  });

  test("an agent that is not root runs workloads as itself and says why", () => {
    const choice = chooseWorkloadUser(1000, WITH_USER);
    assert.equal(choice.user, undefined);
    assert.match(choice.warning!, /not root \(uid 1000\).*can read its data dir/);
  });

  test("passwd lines: exact name, numeric ids", () => {
    assert.equal(passwdEntry("mill-workloadx:x:5:5::/:/bin/sh\n", "mill-workload"), undefined);
    assert.equal(passwdEntry("mill-workload:x:five:5::/:/bin/sh\n", "mill-workload"), undefined);
    assert.deepEqual(passwdEntry(WITH_USER, "nobody"), { name: "nobody", uid: 65534, gid: 65534 });
  });
});
