#!/usr/bin/env bash
# Builds kube-apiserver and etcd from Go modules (no Docker, no prebuilt downloads) and caches
# them outside git, keyed by version. Prints the directory holding both binaries.
set -euo pipefail

K8S_VERSION="${O2C_K8S_VERSION:-v1.35.4}"
ETCD_VERSION="${O2C_ETCD_VERSION:-v3.6.16}"
CACHE_ROOT="${O2C_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/o2c/envtest}"
OUT="$CACHE_ROOT/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}"

if [[ -x "$OUT/kube-apiserver" && -x "$OUT/etcd" ]]; then
  echo "$OUT"
  exit 0
fi

command -v go >/dev/null || { echo "go is required to build the envtest binaries" >&2; exit 1; }
mkdir -p "$OUT"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export CGO_ENABLED=0 GOFLAGS=-mod=mod

# kube-apiserver: through the wrapper module test/cluster/build.sh uses for the node binaries too,
# so the packages they share compile once into the Go build cache.
if [[ ! -x "$OUT/kube-apiserver" ]]; then
  source "$(cd "$(dirname "$0")" && pwd)/k8s-module.sh"
  k8s_build "$K8S_VERSION" "$OUT" kube-apiserver
fi

# etcd: its server module has relative replaces too; a separate wrapper keeps its dependency
# versions apart from the apiserver's.
if [[ ! -x "$OUT/etcd" ]]; then
  mkdir -p "$work/etcd" && cd "$work/etcd"
  go mod init o2c.dev/envtest-etcd >/dev/null 2>&1
  go get -tool "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >&2
  go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3 >&2
  mv "$OUT/etcd.tmp" "$OUT/etcd"
fi

echo "$OUT"
