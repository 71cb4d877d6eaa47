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

# kube-apiserver: k8s.io/kubernetes requires its staging modules at v0.0.0 with relative replaces,
# so a wrapper module replaces each of them with the published v0.Y.Z.
if [[ ! -x "$OUT/kube-apiserver" ]]; then
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  staging_version="v0.${K8S_VERSION#v1.}"
  mkdir -p "$work/k8s" && cd "$work/k8s"
  go mod init o2c.dev/envtest-k8s >/dev/null 2>&1
  gomod="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  {
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    grep -E '^\s*k8s\.io/[a-z0-9-]+ v0\.0\.0\s*$' "$gomod" | awk '{print $1}' | sort -u |
      while read -r m; do echo "replace $m => $m ${staging_version}"; done
  } >> go.mod
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
  go mod tidy >&2
  go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}" \
    -o "$OUT/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver >&2
  mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
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
