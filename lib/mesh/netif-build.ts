/**
 * Build step for mill-netif, the static address helper (lib/mesh/netif.c), called by the lead's build.
 * Owns: the compiler invocation. Must not touch: anything but outPath.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";

export const NETIF_SOURCE = fileURLToPath(new URL("./netif.c", import.meta.url));

/** Compiles netif.c into a static, stripped binary at outPath with musl-gcc. */
export function buildNetifHelper(outPath: string): Promise<void> {
  const args = ["-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-o", outPath, NETIF_SOURCE];
  return new Promise((resolve, reject) => {
    execFile("musl-gcc", args, (error, _stdout, stderr) => {
      if ((error as NodeJS.ErrnoException | null)?.code === "ENOENT") {
        reject(
          new Error(
            "musl-gcc not found: install it (Debian/Ubuntu: apt-get install musl-tools) to build mill-netif",
          ),
        );
      } else if (error) {
        reject(
          new Error(
            `musl-gcc failed to build mill-netif from ${NETIF_SOURCE}: ${stderr.trim() || error.message}`,
          ),
        );
      } else {
        resolve();
      }
    });
  });
}
