#!/usr/bin/env bash
# `npm run demo`: builds dist/mill, forms a local 3-node cluster on loopback addresses
# (127.77.0.1-3, plain transport: no WireGuard, no root needed), prints `mill status`, and
# stops the nodes again (MILL_DEMO_KEEP=1 leaves them running, data in the printed folder).
set -euo pipefail
cd "$(dirname "$0")/.."
npm run --silent build
mill="$PWD/dist/mill"
dir="$(mktemp -d "${TMPDIR:-/tmp}/mill-demo-XXXXXX")"

stop_nodes() {
  for node in 1 2 3; do
    [ -f "$dir/node-$node/mill.pid" ] && kill "$(cat "$dir/node-$node/mill.pid")" 2>/dev/null || true
  done
}
if [ "${MILL_DEMO_KEEP:-0}" != 1 ]; then trap 'stop_nodes; rm -rf "$dir"' EXIT; fi

echo "\$ mill init --advertise 127.77.0.1 --name node-1 --mesh none"
token=$("$mill" init --advertise 127.77.0.1 --name node-1 --mesh none --data-dir "$dir/node-1" --no-service |
  tee /dev/stderr | sed -n 's/^Token: //p')
for node in 2 3; do
  echo "\$ mill join 127.77.0.1:4400 --advertise 127.77.0.$node --name node-$node --token mill_t_… --mesh none"
  "$mill" join 127.77.0.1:4400 --advertise "127.77.0.$node" --name "node-$node" --token "$token" \
    --mesh none --data-dir "$dir/node-$node" --no-service
done
echo "\$ mill status"
MILL_DATA_DIR="$dir/node-1" "$mill" status
if [ "${MILL_DEMO_KEEP:-0}" = 1 ]; then echo "nodes left running; data and logs in $dir"; fi
