#!/usr/bin/env bash
# `npm run demo`: build dist/mill, then show what it can do on this machine today.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run --silent build
./dist/mill --version
./dist/mill doctor
