/**
 * `npm run release`: dist/release/ with one executable per architecture (mill-linux-x64,
 * mill-linux-arm64; see ./executable.ts), SHA256SUMS over them and install.sh, ready to upload
 * as they are. dist/mill becomes the host architecture's file, so tests run what is released.
 * Owns: dist/release/. Must not touch: runtime behaviour.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { dist, fileSize, main, prepare, replaceFile } from "./build.ts";
import { buildExecutable } from "./executable.ts";
import { ARCHES, sha256File } from "./vendor.ts";

const release = join(dist, "release");

/** build/install.sh, with `url` (where this release will be served) as its default source. */
function installScript(url: string | undefined): string {
  const script = readFileSync(new URL("./install.sh", import.meta.url), "utf8");
  if (!url) return script;
  if (!/^https?:\/\/[^\s"'`$\\]+$/.test(url)) {
    throw new Error(`MILL_RELEASE_URL=${url} is not a plain http(s) URL`);
  }
  return script.replace('DEFAULT_RELEASE_URL=""', `DEFAULT_RELEASE_URL="${url}"`);
}

await main(async () => {
  const host = await prepare(ARCHES, "the release build");
  rmSync(release, { recursive: true, force: true });
  mkdirSync(release, { recursive: true });
  for (const target of ARCHES) {
    await buildExecutable({ target, host, out: join(release, `mill-linux-${target}`) });
  }
  writeFileSync(join(release, "install.sh"), installScript(process.env.MILL_RELEASE_URL), {
    mode: 0o755,
  });
  const files = readdirSync(release).sort();
  writeFileSync(
    join(release, "SHA256SUMS"),
    files.map((file) => `${sha256File(join(release, file))}  ${file}\n`).join(""),
  );
  replaceFile(join(release, `mill-linux-${host}`), join(dist, "mill"));
  for (const file of [...files, "SHA256SUMS"]) {
    process.stdout.write(`dist/release/${file} (${fileSize(join(release, file))})\n`);
  }
});
