#!/usr/bin/env bash
# Builds np-guard's NetworkPolicy connectivity analyser (`netpolicy`, pinned in go.mod beside this
# script) into the tools cache; prints the bin directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../go-tool.sh" "$here" github.com/np-guard/netpol-analyzer/cmd/netpolicy netpolicy
