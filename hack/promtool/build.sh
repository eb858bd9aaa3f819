#!/usr/bin/env bash
# Builds Prometheus's rule checker and unit-test runner (`promtool`, pinned in go.mod beside this
# script) into the tools cache; prints the bin directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../go-tool.sh" "$here" github.com/prometheus/prometheus/cmd/promtool promtool
