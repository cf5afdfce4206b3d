/**
 * Human units and text tables for terminal output, shared by the cluster and workload views.
 * A leaf of lib/shared: imports nothing from other rooms.
 * Owns: number, size and duration formats and column layout. Must not touch: I/O, clocks (ages
 * arrive as milliseconds), what the rows mean.
 */

/** Columns as wide as their widest cell (or their minimum), two spaces apart, no trailing blanks. */
export function formatTable(
  rows: readonly (readonly string[])[],
  indent: string,
  minWidths: readonly number[],
): string[] {
  const widths = rows[0]!.map((_, column) =>
    Math.max(minWidths[column] ?? 0, ...rows.map((row) => row[column]!.length)),
  );
  return rows.map(
    (row) =>
      indent +
      row
        .map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!)))
        .join("  "),
  );
}

const BYTE_UNITS = ["K", "M", "G", "T", "P"];

/** Binary units with at most one decimal: 8G, 512M, 7.5G; bytes below 1K as "900B"; 0 as "0". */
export function formatBytes(bytes: number): string {
  if (bytes === 0) return "0";
  if (bytes < 1024) return `${bytes}B`;
  let unit = 0;
  let value = bytes / 1024;
  while (unit < BYTE_UNITS.length - 1 && Math.round(value * 10) / 10 >= 1024) {
    value /= 1024;
    unit++;
  }
  return `${formatNumber(Math.round(value * 10) / 10)}${BYTE_UNITS[unit]}`;
}

/** Up to two decimals, without trailing zeros: 4, 0.25, 1.5. */
export function formatNumber(value: number): string {
  return String(Math.round(value * 100) / 100);
}

export function formatDuration(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600)
    return `${Math.floor(seconds / 60)}m${seconds % 60 ? `${seconds % 60}s` : ""}`;
  return `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`;
}
