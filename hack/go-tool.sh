#!/usr/bin/env bash
# Builds one command from a pinned Go tool module into a cache keyed by the pins, the way the
# test oracles are built: `hack/go-tool.sh DIR PACKAGE BINARY`, where DIR holds the go.mod and
# go.sum that pin PACKAGE's module. A later run with the same pins reuses the cache; a changed pin
# builds into a new directory. Prints the bin directory on stdout; logs go to stderr.
set -euo pipefail

dir="$(cd "$1" && pwd)"
package="$2"
binary="$3"
key="$(cat "$dir/go.mod" "$dir/go.sum" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
cache_root="${GOREAL_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/goreal-operator/tools}/$binary"
bin="$cache_root/$key/bin"

if [[ -x "$bin/$binary" ]]; then
  echo "$bin"
  exit 0
fi

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
tmp="$cache_root/$key/bin.partial"
rm -rf "$tmp"
mkdir -p "$tmp"

echo "building $binary ($package, pinned in $dir/go.mod) into $bin" >&2
(cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$tmp/$binary" "$package")

# Publish atomically so an interrupted build never looks complete.
rm -rf "$bin"
mv "$tmp" "$bin"
echo "$bin"
