/**
 * The rooms of lib/ and which way their arrows point, as the README's Architecture table states
 * them: a room imports only rooms listed below it, exactly those its row lists, and no file in
 * lib/ re-exports another module's names (rooms have no index.ts facade).
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../", import.meta.url));
const lib = join(root, "lib");

interface Row {
  readonly room: string;
  readonly imports: ReadonlySet<string>;
}

/** The Architecture section's table rows, top to bottom: `| \`lib/ROOM\` | owns | imports |`. */
function documentedRooms(readme: string): Row[] {
  const section = readme.slice(readme.indexOf("## Architecture"));
  const rows: Row[] = [];
  for (const line of section.slice(0, section.indexOf("\n## ")).split("\n")) {
    const match = /^\| `lib\/([a-z-]+)` \|.*\|([^|]*)\|\s*$/.exec(line);
    if (!match) continue;
    const imports = match[2]!.split(",").map((name) => name.trim());
    rows.push({ room: match[1]!, imports: new Set(imports.filter((name) => name !== "")) });
  }
  return rows;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

/** Every module specifier a file imports or re-exports, type-only ones included. */
function specifiers(source: string): string[] {
  const found: string[] = [];
  const pattern =
    /(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s*"([^"]+)"|(?:^|\n)\s*import\s*"([^"]+)"/g;
  for (const match of source.matchAll(pattern)) found.push((match[1] ?? match[2])!);
  return found;
}

const roomOf = (path: string) => relative(lib, path).split("/")[0]!;

/** Room → rooms it imports, and the file that shows each arrow. */
function actualArrows(): Map<string, Map<string, string>> {
  const arrows = new Map<string, Map<string, string>>();
  for (const file of sourceFiles(lib)) {
    const from = roomOf(file);
    for (const specifier of specifiers(readFileSync(file, "utf8"))) {
      if (!specifier.startsWith(".")) continue;
      const target = resolve(dirname(file), specifier);
      if (!target.startsWith(`${lib}/`)) continue;
      const to = roomOf(target);
      if (to === from) continue;
      const own = arrows.get(from) ?? new Map<string, string>();
      if (!own.has(to)) own.set(to, relative(root, file));
      arrows.set(from, own);
    }
  }
  return arrows;
}

const rows = documentedRooms(readFileSync(join(root, "README.md"), "utf8"));

test("the README lists every room of lib/ once", () => {
  const folders = readdirSync(lib, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();
  assert.deepEqual(
    rows.map((row) => row.room).sort(),
    folders,
    "add or remove the room's row in the README's Architecture table",
  );
});

test("every arrow between rooms points down the table, and the table names each one", () => {
  const position = new Map(rows.map((row, index) => [row.room, index]));
  const arrows = actualArrows();
  const problems: string[] = [];
  for (const row of rows) {
    const actual = arrows.get(row.room) ?? new Map<string, string>();
    for (const [to, file] of actual) {
      if ((position.get(to) ?? -1) <= position.get(row.room)!) {
        problems.push(
          `${file} imports lib/${to}, which is not below lib/${row.room}: move what both need down`,
        );
      } else if (!row.imports.has(to)) {
        problems.push(
          `${file} imports lib/${to}: add ${to} to lib/${row.room}'s row in the README`,
        );
      }
    }
    for (const listed of row.imports) {
      if (!actual.has(listed)) {
        problems.push(
          `lib/${row.room} no longer imports lib/${listed}: drop it from its README row`,
        );
      }
    }
  }
  assert.deepEqual(problems, []);
});

test("no file in lib/ re-exports another module's names", () => {
  const reexports = sourceFiles(lib).filter((file) =>
    /(?:^|\n)\s*export\b[^;]*?\bfrom\s*"/.test(readFileSync(file, "utf8")),
  );
  assert.deepEqual(
    reexports.map((file) => relative(root, file)),
    [],
    "import the defining module instead of re-exporting it",
  );
});

test("the import scanner sees multi-line, type-only and side-effect imports", () => {
  const source = [
    'import {\n  a,\n  type B,\n} from "./a.ts";',
    'import type { C } from "../c/c.ts";',
    'export { d } from "./d.ts";',
    'import "./side.ts";',
    'const text = "from nowhere";',
  ].join("\n");
  assert.deepEqual(specifiers(source), ["./a.ts", "../c/c.ts", "./d.ts", "./side.ts"]);
});

/** Every .ts file of lib/, test/ and build/, and main.ts, except this one (it names the patterns). */
function projectFiles(): string[] {
  const self = fileURLToPath(import.meta.url);
  return [
    ...sourceFiles(lib),
    ...sourceFiles(join(root, "test")),
    ...sourceFiles(join(root, "build")),
    join(root, "main.ts"),
  ].filter((file) => file !== self);
}

test("the shared leaves are not written again: errorMessage, concatBytes, one poll loop", () => {
  const copies: Array<[RegExp, string, string]> = [
    [
      /as Error\)\.message|instanceof Error \? \w+\.message/,
      "lib/shared/errors.ts",
      "errorMessage",
    ],
    [/function concatBytes\b/, "lib/shared/bytes.ts", "concatBytes"],
    [/function poll(?:For|Until)\b/, "lib/shared/poll.ts", "pollFor or pollUntil"],
  ];
  const problems: string[] = [];
  for (const file of projectFiles()) {
    const path = relative(root, file);
    const source = readFileSync(file, "utf8");
    for (const [pattern, home, helper] of copies) {
      if (path !== home && pattern.test(source)) problems.push(`${path}: use ${helper} (${home})`);
    }
  }
  assert.deepEqual(problems, []);
});
