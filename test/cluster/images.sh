#!/usr/bin/env bash
# Builds the cluster's own images with the local Docker engine and loads images into the cluster's
# containerd (`docker save | ctr import`): no registry is involved anywhere.
#   images.sh system        pause, CoreDNS, local-path provisioner (FROM scratch + binaries built here)
#   images.sh services      RabbitMQ and PostgreSQL from Debian's packages, FROM o2c-debian:bookworm
#   images.sh build-services the same, built only (make e2e loads them into kind itself)
#   images.sh load IMAGE... any local Docker image, e.g. o2c:dev
# An image is imported again only when its Docker image ID changed since the last import.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
source "$here/env.sh"

log() { printf 'cluster-images: %s\n' "$*" >&2; }
ctrd_sock="$CLUSTER_HOME/containerd/containerd.sock"
stamps="$CLUSTER_HOME/images"
# scripts/docker.sh only when the engine does not answer: a dockerd it started holds its lock.
docker info >/dev/null 2>&1 || bash "$repo/scripts/docker.sh"

# load IMAGE...: imports each image into containerd's k8s.io namespace (where the CRI looks).
load() {
  local img id stamp
  for img in "$@"; do
    id="$(docker image inspect -f '{{.Id}}' "$img")" || { log "no local Docker image $img"; exit 1; }
    mkdir -p "$stamps"
    stamp="$stamps/$(printf '%s' "$img" | tr '/:' '__').id"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$id" ]]; then continue; fi
    log "loading $img into containerd"
    docker save "$img" | ctr --address "$ctrd_sock" -n k8s.io images import - >/dev/null
    echo "$id" >"$stamp"
  done
}

# build TAG DIR FILE...: docker build of DIR with FILEs (built binaries) copied into its context.
build() {
  local tag="$1" dir="$2"
  shift 2
  local ctx
  ctx="$(mktemp -d)"
  cp "$dir"/* "$ctx/"
  for f in "$@"; do cp "$f" "$ctx/"; done
  # The legacy builder's deprecation banner is noise; the output is shown only when the build fails.
  if ! docker build -q -t "$tag" "$ctx" >"$ctx.log" 2>&1; then
    cat "$ctx.log" >&2
    exit 1
  fi
  rm -f "$ctx.log"
  rm -rf "$ctx"
}

system() {
  bash "$here/build.sh" pause coredns local-path
  build "$PAUSE_IMAGE" "$here/images/pause" "$PAUSE_BIN/pause"
  build "$COREDNS_IMAGE" "$here/images/coredns" "$COREDNS_BIN/coredns"
  build "$LOCAL_PATH_IMAGE" "$here/images/local-path" "$LOCAL_PATH_BIN/local-path-provisioner" /bin/busybox
  load "$PAUSE_IMAGE" "$COREDNS_IMAGE" "$LOCAL_PATH_IMAGE"
}

build_services() {
  if ! docker image inspect o2c-debian:bookworm >/dev/null 2>&1; then
    bash "$repo/scripts/image/base.sh" >&2
  fi
  build "$RABBITMQ_IMAGE" "$here/images/rabbitmq"
  build "$POSTGRESQL_IMAGE" "$here/images/postgresql"
}

case "${1:-}" in
  system) system ;;
  services) build_services && load "$RABBITMQ_IMAGE" "$POSTGRESQL_IMAGE" ;;
  build-services) build_services ;;
  load) shift; load "$@" ;;
  *) log "usage: images.sh system|services|build-services|load IMAGE..."; exit 2 ;;
esac
