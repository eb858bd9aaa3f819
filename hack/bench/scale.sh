#!/usr/bin/env bash
# Runs the scale benchmark (benches/scale) on a local control plane and prints its report:
#   hack/bench/scale.sh            default size: 1,000 namespaces, 10,000 foreign Secrets and
#                                  10,000 ConfigMaps, 10,000 manifests for audit and kube-score
#   hack/bench/scale.sh --smoke    the CI size; counts asserted, times only reported
# Other options (--namespaces, --foreign, --quiet, --churn, ...): `--help`.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash hack/control-plane/build.sh >/dev/null
kube_score="$(bash hack/kube-score/build.sh)/kube-score"
exec cargo bench --locked --bench scale -- --kube-score "$kube_score" "$@"
