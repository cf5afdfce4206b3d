/**
 * A workload's spec: what `mill run` asks for, its validation and its hash.
 * Owns: the rules for names, replicas, cpu, memory sizes, env and command, and the canonical form
 * that makes "same spec" a byte comparison. Must not touch: state, scheduling, I/O.
 *
 * Decisions recorded here:
 * - cpu is counted in millicores: 0.25 is 250m, and a finer value is refused rather than
 *   rounded, so sums of reservations are exact integers on every node.
 * - Memory suffixes are binary, as docker's `--memory` reads them: 256M = 256Mi = 256 * 2^20.
 * - env is kept sorted by key with duplicates refused, so the same variables in another order
 *   are the same spec.
 * - specHash covers what a running process depends on (command, env, cpu, memory), not the
 *   replica count: scaling adds or removes replicas, any other change replaces them.
 */

import { createHash } from "node:crypto";
import { type Checked, isDnsLabel } from "../shared/fields.ts";
import { formatBytes } from "../shared/format.ts";
import type { Schema } from "../shared/schema.ts";

export interface WorkloadSpec {
  readonly name: string;
  readonly replicas: number;
  /** Cores, a multiple of 0.001. */
  readonly cpu: number;
  readonly memoryBytes: number;
  /** "KEY=VALUE", sorted by key, keys unique. */
  readonly env: readonly string[];
  /** argv; argv[0] is looked up on PATH. */
  readonly command: readonly string[];
}

/** The part of a spec a process runs with; allocations of older specs keep theirs. */
export type WorkloadTemplate = Omit<WorkloadSpec, "name" | "replicas">;

export const DEFAULT_REPLICAS = 1;
export const DEFAULT_CPU = 0.25;
export const DEFAULT_MEMORY_BYTES = 256 * 1024 * 1024;
export const MAX_REPLICAS = 10_000;
const MAX_CPU = 1_000_000;
const MAX_ARGS = 1024;
const MAX_ENV = 1024;
const MAX_STRING = 16 * 1024;

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MEMORY = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)b?$/i;
const UNIT_POWERS: Readonly<Record<string, number>> = { "": 0, k: 1, m: 2, g: 3, t: 4, p: 5 };

/**
 * What a client sends to run a workload (POST body or CLI flags). Omitted fields take the
 * defaults; cpu and memory may be strings as typed on the command line.
 */
export interface WorkloadRequest {
  readonly name?: unknown;
  readonly replicas?: unknown;
  readonly cpu?: unknown;
  readonly memory?: unknown;
  readonly env?: unknown;
  readonly command?: unknown;
}

/** Validates a request and returns the canonical spec, or the first problem found. Never throws. */
export function parseWorkloadRequest(request: unknown): Checked<WorkloadSpec> {
  if (typeof request !== "object" || request === null || Array.isArray(request)) {
    return fail("body", "the workload must be a JSON object with name, command and resources");
  }
  const input = request as WorkloadRequest;
  const name = checkWorkloadName(input.name);
  if (name) return fail("name", name);
  const replicas = parseReplicas(input.replicas ?? DEFAULT_REPLICAS);
  if (typeof replicas === "string") return fail("replicas", replicas);
  const cpu = parseCpu(input.cpu ?? DEFAULT_CPU);
  if (typeof cpu === "string") return fail("cpu", cpu);
  const memoryBytes = parseMemory(input.memory ?? DEFAULT_MEMORY_BYTES);
  if (typeof memoryBytes === "string") return fail("memory", memoryBytes);
  const env = parseEnv(input.env ?? []);
  if (typeof env === "string") return fail("env", env);
  const command = parseCommand(input.command);
  if (typeof command === "string") return fail("command", command);
  return {
    ok: true,
    value: { name: input.name as string, replicas, cpu, memoryBytes, env, command },
  };
}

/**
 * A spec carried in a command or a snapshot, which must already be canonical: every field
 * present with its final type, env in order. Rebuilt field by field, dropping anything else.
 */
export const canonicalSpec: Schema<WorkloadSpec> = {
  parse(value, field) {
    if (typeof value !== "object" || value === null)
      return fail(field, `${field} must be an object`);
    const spec = value as Record<string, unknown>;
    for (const [name, type] of CANONICAL_TYPES) {
      const present = type === "array" ? Array.isArray(spec[name]) : typeof spec[name] === type;
      if (!present) return fail(`${field}.${name}`, `${field}.${name} must be a ${type}`);
    }
    const checked = parseWorkloadRequest({ ...spec, memory: spec.memoryBytes });
    if (!checked.ok) return fail(`${field}.${checked.problem.field}`, checked.problem.error);
    const env = spec.env as readonly string[];
    if (checked.value.env.some((entry, index) => entry !== env[index])) {
      return fail(`${field}.env`, `${field}.env must be sorted by key`);
    }
    return checked;
  },
  pick: (spec) => ({ name: spec.name, replicas: spec.replicas, ...templateOf(spec) }),
};

const CANONICAL_TYPES: readonly (readonly [string, string])[] = [
  ["name", "string"],
  ["replicas", "number"],
  ["cpu", "number"],
  ["memoryBytes", "number"],
  ["env", "array"],
  ["command", "array"],
];

export function checkWorkloadName(value: unknown): string | undefined {
  if (typeof value !== "string" || value === "") {
    return "name is missing: give the workload a name, e.g. `mill run web -- CMD`";
  }
  if (isDnsLabel(value)) return undefined;
  const hint = value
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63);
  const example = isDnsLabel(hint) ? `, e.g. ${hint}` : "";
  return `name ${JSON.stringify(value.slice(0, 80))} is not a DNS label: use 1-63 lowercase letters, digits and inner hyphens${example}`;
}

function parseReplicas(value: unknown): number | string {
  const count = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value;
  if (Number.isInteger(count) && (count as number) >= 1 && (count as number) <= MAX_REPLICAS) {
    return count as number;
  }
  return `replicas ${JSON.stringify(value)} is not a replica count: use a whole number from 1 to ${MAX_REPLICAS} (--replicas)`;
}

/** Cores as a number or a decimal string: 0.25, "1", "1.5". */
export function parseCpu(value: unknown): number | string {
  const cores =
    typeof value === "string" && /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : value;
  const problem = `cpu ${JSON.stringify(value)} is not a core count: use a positive number of cores with at most 3 decimals, e.g. 0.25 (--cpu)`;
  if (typeof cores !== "number" || !Number.isFinite(cores) || cores <= 0 || cores > MAX_CPU) {
    return problem;
  }
  return toMillicores(cores) / 1000 === cores ? cores : problem;
}

/** Bytes as a whole number, or a size string: "256M", "1G", "512Mi", "1.5G", "4096". */
export function parseMemory(value: unknown): number | string {
  const problem = `memory ${JSON.stringify(value)} is not a memory size: use a size like 256M, 1G or 512Mi (--memory)`;
  let bytes: number;
  if (typeof value === "number") {
    bytes = value;
  } else if (typeof value === "string") {
    const match = MEMORY.exec(value.trim());
    if (!match) return problem;
    const [, amount, unit, binary] = match as unknown as [string, string, string, string];
    if (binary && !unit) return problem;
    bytes = Math.round(Number(amount) * 1024 ** UNIT_POWERS[unit.toLowerCase()]!);
  } else {
    return problem;
  }
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : problem;
}

function parseEnv(value: unknown): readonly string[] | string {
  if (!Array.isArray(value) || value.length > MAX_ENV) {
    return `env must be a list of at most ${MAX_ENV} KEY=VALUE entries (--env KEY=VALUE)`;
  }
  const byKey = new Map<string, string>();
  for (const entry of value) {
    if (typeof entry !== "string" || !entry.includes("=")) {
      return `env entry ${JSON.stringify(entry)} is not KEY=VALUE: write it as --env KEY=VALUE`;
    }
    const key = entry.slice(0, entry.indexOf("="));
    if (!ENV_KEY.test(key)) {
      return `env key ${JSON.stringify(key)} is not a variable name: use letters, digits and _, not starting with a digit`;
    }
    if (entry.includes("\0") || entry.length > MAX_STRING) {
      return `env ${key} has a NUL byte or is longer than ${MAX_STRING} characters: shorten it`;
    }
    if (byKey.has(key)) return `env ${key} is given twice: keep one --env ${key}=...`;
    byKey.set(key, entry);
  }
  return [...byKey.keys()].sort().map((key) => byKey.get(key)!);
}

function parseCommand(value: unknown): readonly string[] | string {
  if (!Array.isArray(value) || value.length === 0 || value[0] === "") {
    return "command is empty: put the program and its arguments after --, e.g. mill run web -- sleep 3600";
  }
  if (value.length > MAX_ARGS) {
    return `command has ${value.length} arguments: use at most ${MAX_ARGS}`;
  }
  for (const [index, arg] of value.entries()) {
    if (typeof arg !== "string" || arg.includes("\0") || arg.length > MAX_STRING) {
      return `command argument ${index} must be a string without NUL bytes of at most ${MAX_STRING} characters`;
    }
  }
  return [...(value as string[])];
}

export function toMillicores(cpu: number): number {
  return Math.round(cpu * 1000);
}

/** Hashes the template: two specs with the same hash run the same process with the same limits. */
export function specHash(spec: WorkloadTemplate): string {
  const canonical = JSON.stringify([
    toMillicores(spec.cpu),
    spec.memoryBytes,
    spec.env,
    spec.command,
  ]);
  return createHash("sha256").update(canonical).digest("hex").slice(0, 16);
}

/** The template's fields in their canonical order, lists copied. */
export function templateOf(spec: WorkloadTemplate): WorkloadTemplate {
  return {
    cpu: spec.cpu,
    memoryBytes: spec.memoryBytes,
    env: [...spec.env],
    command: [...spec.command],
  };
}

/** "0.5 cpu / 256M", as errors and progress lines describe one replica. */
export function describeReplica(spec: Pick<WorkloadSpec, "cpu" | "memoryBytes">): string {
  return `${spec.cpu} cpu / ${formatBytes(spec.memoryBytes)}`;
}

function fail(field: string, error: string): Checked<WorkloadSpec> {
  return { ok: false, problem: { field, error } };
}
