#!/bin/sh
# Installs Mill on this host: downloads the executable for this machine's architecture from a
# Mill release, checks it against the release's SHA256SUMS, checks that it runs, and only then
# puts it in place as `mill`. Any failure prints one line and leaves nothing installed.
#
#   curl -fsSL "$MILL_RELEASE_URL/install.sh" | sh
#
# MILL_RELEASE_URL   where the release files are served (mill-linux-x64, mill-linux-arm64,
#                    SHA256SUMS); default: the URL this release was built for, below
# MILL_INSTALL_DIR   where to put `mill`; default /usr/local/bin as root, else ~/.local/bin
set -eu

# `npm run release` writes its own MILL_RELEASE_URL here, when it was given one.
DEFAULT_RELEASE_URL=""

fail() {
  echo "install.sh: $*" >&2
  exit 1
}

release_url=${MILL_RELEASE_URL:-$DEFAULT_RELEASE_URL}
[ -n "$release_url" ] || fail "no release URL: set MILL_RELEASE_URL to where the Mill release files are served"
release_url=${release_url%/}

case $(uname -m) in
  x86_64 | amd64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) fail "no Mill release for this architecture ($(uname -m)): releases exist for x86_64 and aarch64" ;;
esac
[ "$(uname -s)" = Linux ] || fail "Mill runs on Linux only (this is $(uname -s))"
file=mill-linux-$arch

if [ -n "${MILL_INSTALL_DIR:-}" ]; then
  install_dir=$MILL_INSTALL_DIR
elif [ "$(id -u)" = 0 ]; then
  install_dir=/usr/local/bin
else
  install_dir=${HOME:?}/.local/bin
fi

if command -v curl >/dev/null 2>&1; then
  download() { curl -fsSL --retry 2 -o "$2" "$1" 2>&1; }
elif command -v wget >/dev/null 2>&1; then
  download() { wget -q -O "$2" "$1" 2>&1; }
else
  fail "neither curl nor wget is installed: install one of them (apt-get install curl) and run this again"
fi
if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
  sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
  fail "neither sha256sum nor shasum is installed: cannot check the download"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mill-install-XXXXXX") || fail "cannot create a temporary directory"
staged=$install_dir/.mill.$$
trap 'rm -rf "$work"; rm -f "$staged"' EXIT
trap 'exit 1' HUP INT TERM

fetch() {
  output=$(download "$release_url/$1" "$work/$1") ||
    fail "cannot download $release_url/$1 (${output:-no answer}): check the network and MILL_RELEASE_URL"
}
fetch SHA256SUMS
fetch "$file"

expected=$(awk -v name="$file" '$2 == name || $2 == "*" name { print $1 }' "$work/SHA256SUMS")
[ -n "$expected" ] || fail "$release_url/SHA256SUMS lists no $file: is MILL_RELEASE_URL a Mill release?"
actual=$(sha256 "$work/$file")
[ "$actual" = "$expected" ] ||
  fail "checksum mismatch for $file: got $actual, SHA256SUMS says $expected; nothing was installed"

chmod 755 "$work/$file"
if ! report=$("$work/$file" --version 2>&1); then
  fail "the downloaded $file does not run on this host ($(echo "$report" | head -n 1)); nothing was installed"
fi
version=$(echo "$report" | head -n 1)

mkdir -p "$install_dir" 2>/dev/null || fail "cannot create $install_dir: run as root or set MILL_INSTALL_DIR"
# Copy next to the target, then rename: a reader never sees half a file, a failure leaves none.
cp "$work/$file" "$staged" 2>/dev/null || fail "cannot write to $install_dir: run as root or set MILL_INSTALL_DIR"
mv -f "$staged" "$install_dir/mill" 2>/dev/null || fail "cannot replace $install_dir/mill"

echo "installed $version as $install_dir/mill"
case ":$PATH:" in
  *":$install_dir:"*) mill=mill ;;
  *)
    mill=$install_dir/mill
    echo "($install_dir is not on your PATH: add it, or run $mill)"
    ;;
esac
echo "next: $mill init            (the first node of a new cluster)"
echo "  or: $mill join HOST --token TOKEN   (a node joining the cluster at HOST)"
