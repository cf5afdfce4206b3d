#!/usr/bin/env bash
# The one test command (`npm test`): lint, types, unit tests under Node and Deno, the build,
# then every node:test suite in a single run so that its summary lines close the output.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"

step() { printf '\n== %s\n' "$*"; }

# Some suites run processes as nobody (the attacker, the fresh-host check), which need to read
# the checkout: under a 0700 directory (what mktemp -d makes) they would fail deep in the run.
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null &&
  ! setpriv --reuid=65534 --regid=65534 --clear-groups -- test -r "$PWD/package.json"; then
  echo "the checkout $PWD is not readable by uid 65534, which some tests run as: chmod o+rx each directory above it (mktemp -d makes 0700 ones)" >&2
  exit 1
fi

step "biome"
biome check .
step "tsc --noEmit"
tsc --noEmit
step "deno check main.ts"
deno check --quiet main.ts
step "unit tests under Deno"
deno test -A --quiet test/unit/
step "release build (dist/release, dist/mill)"
npm run --silent release
mkdir -p .tmp
step "node:test: unit, simulation, integration, end-to-end"
shopt -s globstar nullglob
files=(test/unit/**/*.test.ts test/sim/**/*.test.ts test/integration/**/*.test.ts test/e2e/**/*.test.ts)
if [ "$(id -u)" = 0 ]; then files+=(test/netns/**/*.test.ts); fi
# A hung test file would otherwise hold the run until CI gives up; the suite takes ~5 min here.
timeout --signal=TERM 1500 node --import tsx --test --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination=.tmp/tap.txt "${files[@]}" || status=$?
if [ "${status:-0}" = 124 ]; then echo "the test run passed 25 minutes and was stopped" >&2; fi
grep -E '^# (tests|pass|fail|skipped|cancelled|duration_ms)' .tmp/tap.txt
exit "${status:-0}"
