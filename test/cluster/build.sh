#!/usr/bin/env bash
# Builds the node parts of the local cluster from source and caches them outside git, keyed by
# version: kubelet, kube-proxy, kube-controller-manager, kube-scheduler and kubectl (the same
# k8s.io/kubernetes wrapper module as envtest's kube-apiserver), CoreDNS and the local-path
# provisioner (kind's default StorageClass; both Go modules) and the pause binary (kubernetes' own
# pause.c, compiled static). `build.sh [k8s|coredns|local-path|pause]...`
# builds only those parts; nothing is rebuilt that is cached already.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"
source "$here/../envtest/k8s-module.sh"

log() { printf 'cluster-build: %s\n' "$*" >&2; }
parts=("$@")
[[ ${#parts[@]} -gt 0 ]] || parts=(k8s coredns local-path pause)
command -v go >/dev/null || { log "go is required"; exit 1; }
# Two callers at once (make cluster, make e2e-local) must not build the same thing twice.
mkdir -p "$O2C_CACHE/cluster"
exec 8>"$O2C_CACHE/cluster/.build.lock"
flock -w 3600 8

node_commands=(kubelet kube-proxy kube-controller-manager kube-scheduler kubectl)

build_k8s() {
  local missing=()
  for c in "${node_commands[@]}"; do [[ -x "$CLUSTER_BIN/$c" ]] || missing+=("$c"); done
  [[ ${#missing[@]} -gt 0 ]] || return 0
  log "building ${missing[*]} ${K8S_VERSION} (cold: many minutes on 2 cores)"
  local t0=$SECONDS
  k8s_build "$K8S_VERSION" "$CLUSTER_BIN" "${missing[@]}"
  log "k8s node binaries built in $((SECONDS - t0))s"
}

build_coredns() {
  [[ -x "$COREDNS_BIN/coredns" ]] && return 0
  log "building coredns ${COREDNS_VERSION}"
  local t0=$SECONDS tmp
  tmp="$(mktemp -d)"
  mkdir -p "$COREDNS_BIN"
  CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath \
    -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=${COREDNS_VERSION}" \
    "github.com/coredns/coredns@${COREDNS_VERSION}" >&2
  mv "$tmp/coredns" "$COREDNS_BIN/coredns.tmp"
  mv "$COREDNS_BIN/coredns.tmp" "$COREDNS_BIN/coredns"
  rm -rf "$tmp"
  log "coredns built in $((SECONDS - t0))s"
}

build_local_path() {
  [[ -x "$LOCAL_PATH_BIN/local-path-provisioner" ]] && return 0
  log "building local-path-provisioner ${LOCAL_PATH_VERSION}"
  local t0=$SECONDS tmp
  tmp="$(mktemp -d)"
  mkdir -p "$LOCAL_PATH_BIN"
  CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath -ldflags "-s -w -X main.VERSION=${LOCAL_PATH_VERSION}" \
    "github.com/rancher/local-path-provisioner@${LOCAL_PATH_VERSION}" >&2
  mv "$tmp/local-path-provisioner" "$LOCAL_PATH_BIN/local-path-provisioner.tmp"
  mv "$LOCAL_PATH_BIN/local-path-provisioner.tmp" "$LOCAL_PATH_BIN/local-path-provisioner"
  rm -rf "$tmp"
  log "local-path-provisioner built in $((SECONDS - t0))s"
}

build_pause() {
  [[ -x "$PAUSE_BIN/pause" ]] && return 0
  command -v gcc >/dev/null && [[ -n "$(gcc -print-file-name=libc.a | grep /)" ]] || {
    log "installing gcc and libc6-dev from Debian (for the static pause binary)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev >&2
  }
  local dir
  dir="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  mkdir -p "$PAUSE_BIN"
  gcc -Os -static -Wall -DVERSION="${PAUSE_TAG}-o2c" -o "$PAUSE_BIN/pause.tmp" "$dir/build/pause/linux/pause.c"
  strip "$PAUSE_BIN/pause.tmp"
  mv "$PAUSE_BIN/pause.tmp" "$PAUSE_BIN/pause"
  log "pause built"
}

for p in "${parts[@]}"; do
  case "$p" in
    k8s) build_k8s ;;
    coredns) build_coredns ;;
    pause) build_pause ;;
    local-path) build_local_path ;;
    *) log "unknown part: $p"; exit 2 ;;
  esac
done
