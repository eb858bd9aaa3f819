#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and etcd from their Go modules into a cache keyed by the pinned
# versions (the go.mod/go.sum files beside this script). A later run with the same pins reuses the
# cache; a changed pin builds into a new directory. Prints the bin directory on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/kube/go.mod")"
key="$(cat "$here"/kube/go.mod "$here"/kube/go.sum "$here"/etcd/go.mod "$here"/etcd/go.sum "$0" \
  | sha256sum | cut -c1-16)"
cache_root="${GOREAL_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/goreal-operator/control-plane}"
bin="$cache_root/$key/bin"

if [[ -x "$bin/kube-apiserver" && -x "$bin/kubectl" && -x "$bin/etcd" ]]; then
  echo "$bin"
  exit 0
fi

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
tmp="$cache_root/$key/bin.partial"
rm -rf "$tmp"
mkdir -p "$tmp"

# Without these stamps /version reports a placeholder and client version checks fail.
major="${k8s_version#v}"; major="${major%%.*}"
minor="${k8s_version#v*.}"; minor="${minor%%.*}"
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  stamp+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit=0000000000000000000000000000000000000000"
  stamp+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

echo "building kube-apiserver and kubectl $k8s_version into $bin" >&2
(cd "$here/kube" && go build -trimpath -ldflags "-s -w $stamp" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
echo "building etcd" >&2
(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)

# Publish atomically so an interrupted build never looks complete.
rm -rf "$bin"
mv "$tmp" "$bin"
echo "$bin"
