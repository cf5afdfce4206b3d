import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  canonicalSpec,
  DEFAULT_CPU,
  DEFAULT_MEMORY_BYTES,
  parseMemory,
  parseWorkloadRequest,
  specHash,
} from "../../../lib/workloads/spec.ts";
import { GiB, MiB, spec } from "./fixtures.ts";

function problem(request: Record<string, unknown>) {
  const checked = parseWorkloadRequest({ name: "web", command: ["sleep", "1"], ...request });
  assert.equal(checked.ok, false, `expected ${JSON.stringify(request)} to be refused`);
  return (checked as Extract<typeof checked, { ok: false }>).problem;
}

describe("workload spec", () => {
  test("omitted fields take the defaults and the spec is canonical", () => {
    const checked = parseWorkloadRequest({ name: "web", command: ["sleep", "1"] });
    assert.deepEqual(checked, {
      ok: true,
      value: {
        name: "web",
        replicas: 1,
        cpu: DEFAULT_CPU,
        memoryBytes: DEFAULT_MEMORY_BYTES,
        env: [],
        command: ["sleep", "1"],
      },
    });
  });

  test("a body that is not an object is refused", () => {
    for (const body of [null, [], "web", 3]) {
      assert.deepEqual(parseWorkloadRequest(body), {
        ok: false,
        problem: {
          field: "body",
          error: "the workload must be a JSON object with name, command and resources",
        },
      });
    }
  });

  test("name must be a DNS label, with a suggestion", () => {
    assert.equal(problem({ name: undefined }).field, "name");
    const bad = problem({ name: "My_App" });
    assert.equal(bad.field, "name");
    assert.match(bad.error, /"My_App" is not a DNS label.*e\.g\. my-app/);
    assert.equal(problem({ name: "-web" }).field, "name");
    assert.equal(problem({ name: "a".repeat(64) }).field, "name");
  });

  test("replicas must be a whole number from 1", () => {
    for (const replicas of [0, -1, 1.5, "x", 10_001]) {
      const bad = problem({ replicas });
      assert.equal(bad.field, "replicas");
      assert.match(bad.error, /--replicas/);
    }
    assert.equal(spec({ replicas: "3" }).replicas, 3);
  });

  test("cpu must be positive with at most 3 decimals", () => {
    for (const cpu of [0, -0.5, "abc", 0.0001, 1.0005, Number.NaN, "1e3"]) {
      const bad = problem({ cpu });
      assert.equal(bad.field, "cpu");
      assert.match(bad.error, /--cpu/);
    }
    assert.equal(spec({ cpu: "0.25" }).cpu, 0.25);
    assert.equal(spec({ cpu: 2 }).cpu, 2);
    assert.equal(spec({ cpu: 0.001 }).cpu, 0.001);
  });

  test("memory sizes are binary and suffixes are case-insensitive", () => {
    assert.equal(parseMemory("256M"), 256 * MiB);
    assert.equal(parseMemory("256Mi"), 256 * MiB);
    assert.equal(parseMemory("256mb"), 256 * MiB);
    assert.equal(parseMemory("1G"), GiB);
    assert.equal(parseMemory("1.5G"), 1.5 * GiB);
    assert.equal(parseMemory("512K"), 512 * 1024);
    assert.equal(parseMemory("4096"), 4096);
    assert.equal(parseMemory(4096), 4096);
    for (const memory of ["12X", "-5M", "0", "M", "1i", "", 0, -1, 1.5, true]) {
      const bad = problem({ memory });
      assert.equal(bad.field, "memory", `memory ${JSON.stringify(memory)}`);
      assert.match(bad.error, /--memory/);
    }
  });

  test("env entries are KEY=VALUE with valid, unique keys, kept sorted", () => {
    assert.deepEqual(spec({ env: ["B=2", "A=1=x", "C="] }).env, ["A=1=x", "B=2", "C="]);
    assert.match(problem({ env: ["FOO"] }).error, /"FOO" is not KEY=VALUE/);
    assert.match(problem({ env: ["1A=x"] }).error, /"1A" is not a variable name/);
    assert.match(problem({ env: ["A-B=x"] }).error, /"A-B" is not a variable name/);
    assert.match(problem({ env: ["A=1", "A=2"] }).error, /A is given twice/);
    assert.match(problem({ env: ["A=\0"] }).error, /NUL/);
    assert.equal(problem({ env: "A=1" }).field, "env");
  });

  test("command must be a non-empty list of strings", () => {
    for (const command of [undefined, [], [""], "sleep 1", [1], ["sh", "a\0b"]]) {
      assert.equal(problem({ command }).field, "command", JSON.stringify(command));
    }
    assert.match(problem({ command: [] }).error, /command is empty: put the program/);
  });

  test("specHash covers the process, not the name or the replica count", () => {
    const base = spec({ env: ["A=1", "B=2"] });
    assert.equal(specHash(base), specHash(spec({ env: ["B=2", "A=1"], replicas: 5, name: "api" })));
    assert.notEqual(specHash(base), specHash(spec({ env: ["A=1", "B=3"] })));
    assert.notEqual(
      specHash(base),
      specHash(spec({ env: ["A=1", "B=2"], command: ["sleep", "2"] })),
    );
    assert.notEqual(specHash(base), specHash(spec({ env: ["A=1", "B=2"], cpu: 0.5 })));
    assert.notEqual(specHash(base), specHash(spec({ env: ["A=1", "B=2"], memory: "1G" })));
    assert.match(specHash(base), /^[0-9a-f]{16}$/);
  });

  test("a spec carried in a command must already be canonical", () => {
    const good = spec({ env: ["A=1", "B=2"] });
    assert.deepEqual(canonicalSpec.parse({ ...good, extra: 1 }, "spec"), { ok: true, value: good });
    const unsorted = canonicalSpec.parse({ ...good, env: ["B=2", "A=1"] }, "spec");
    assert.equal(unsorted.ok || unsorted.problem.field, "spec.env");
    const stringMemory = canonicalSpec.parse({ ...good, memoryBytes: "1G" }, "spec");
    assert.equal(stringMemory.ok || stringMemory.problem.field, "spec.memoryBytes");
    const { replicas: _replicas, ...noReplicas } = good;
    const missing = canonicalSpec.parse(noReplicas, "spec");
    assert.equal(missing.ok || missing.problem.field, "spec.replicas");
    const badName = canonicalSpec.parse({ ...good, name: "Web" }, "spec");
    assert.equal(badName.ok || badName.problem.field, "spec.name");
  });
});
