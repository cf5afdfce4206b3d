/**
 * Build step for mill-netif, the static address helper (lib/mesh/netif.c), called by the build
 * (build/executable.ts, which picks the compiler per target architecture) and by the netns tests.
 * Owns: the compiler invocation. Must not touch: anything but outPath.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";

export const NETIF_SOURCE = fileURLToPath(new URL("./netif.c", import.meta.url));

/** A C compiler that links statically, and the Debian package that provides it. */
export interface NetifCompiler {
  readonly cc: string;
  readonly package: string;
}

const MUSL: NetifCompiler = { cc: "musl-gcc", package: "musl-tools" };

/** Compiles netif.c into a static, stripped binary at outPath (musl-gcc unless told otherwise). */
export function buildNetifHelper(outPath: string, compiler: NetifCompiler = MUSL): Promise<void> {
  const args = ["-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-o", outPath, NETIF_SOURCE];
  return new Promise((resolve, reject) => {
    execFile(compiler.cc, args, (error, _stdout, stderr) => {
      if ((error as NodeJS.ErrnoException | null)?.code === "ENOENT") {
        reject(
          new Error(
            `${compiler.cc} not found: install it (Debian/Ubuntu: apt-get install ${compiler.package}) to build mill-netif`,
          ),
        );
      } else if (error) {
        reject(
          new Error(
            `${compiler.cc} failed to build mill-netif from ${NETIF_SOURCE}: ${stderr.trim() || error.message}`,
          ),
        );
      } else {
        resolve();
      }
    });
  });
}
