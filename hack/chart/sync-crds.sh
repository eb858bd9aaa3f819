#!/usr/bin/env bash
# Copies the generated CRDs (crds/, written by `goreal-operator crd`) into the Helm chart, which
# must never be edited by hand. `--check` changes nothing and fails when the copies differ;
# tests/helm.rs makes the same comparison.
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source_dir="$top/crds"
chart_dir="$top/charts/goreal-operator/crds"

if [[ "${1:-}" == "--check" ]]; then
  if ! diff -r "$source_dir" "$chart_dir" >&2; then
    echo "charts/goreal-operator/crds differs from crds/: run hack/chart/sync-crds.sh" >&2
    exit 1
  fi
  exit 0
fi

mkdir -p "$chart_dir"
rm -f "$chart_dir"/*.yaml
cp "$source_dir"/*.yaml "$chart_dir"/
echo "copied $(ls "$source_dir"/*.yaml | wc -l) CRD file(s) into charts/goreal-operator/crds" >&2
