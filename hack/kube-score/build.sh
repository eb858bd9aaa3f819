#!/usr/bin/env bash
# Builds kube-score (pinned in go.mod beside this script), the reference for the audit throughput
# benchmark, into the tools cache; prints the bin directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../go-tool.sh" "$here" github.com/zegl/kube-score/cmd/kube-score kube-score
