#!/usr/bin/env bash
# Builds the Helm CLI (pinned in go.mod beside this script) into the tools cache; prints the bin
# directory. Helm 4 installs with server-side apply.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../go-tool.sh" "$here" helm.sh/helm/v4/cmd/helm helm
