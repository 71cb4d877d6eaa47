#!/usr/bin/env bash
# Builds the o2c image here: a Docker engine (scripts/docker.sh), the local base images
# (scripts/image/base.sh), an offline npm cache staged into the build context (builds cannot reach
# the npm registry from inside a container on this kind of machine: its TLS is re-signed by a CA only
# the host trusts), then `docker build` of the one Dockerfile, tagged o2c:<chart appVersion> and
# o2c:dev. Prints the version tag on stdout; progress goes to stderr.
set -euo pipefail

log() { printf 'image: %s\n' "$*" >&2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export PATH=$root/node_modules/.bin:$PATH
export DOCKER_BUILDKIT=0

bash scripts/docker.sh
bash scripts/image/base.sh

# One version: the chart's appVersion, which the chart's image tag defaults to.
version=$(node --input-type=module -e \
  "import { readFileSync } from 'node:fs'; import { parse } from 'yaml';
   process.stdout.write(String(parse(readFileSync('charts/o2c/Chart.yaml', 'utf8')).appVersion));")
[[ -n $version && $version != undefined ]] || { log "charts/o2c/Chart.yaml has no appVersion"; exit 1; }

# --- npm cache for the Dockerfile's two installs --------------------------------------------------
cache=${XDG_CACHE_HOME:-$HOME/.cache}/o2c/image
npm_cache=$cache/npm-cache
lock_sum=$(sha256sum package-lock.json | cut -c1-16)
mkdir -p "$npm_cache"
exec 9>"$cache/npm-cache.lock"
flock -w 600 9
if [[ ! -f $npm_cache/.filled-$lock_sum ]]; then
  log "filling the npm cache for package-lock.json $lock_sum"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  cp package.json package-lock.json "$tmp/"
  for omit in dev optional; do
    (cd "$tmp" && rm -rf node_modules &&
      npm ci --omit="$omit" --ignore-scripts --no-audit --no-fund --prefer-offline --cache "$npm_cache" \
        --loglevel=error >&2)
  done
  rm -rf "$tmp"
  trap - EXIT
  touch "$npm_cache/.filled-$lock_sum"
fi
# The build context sees .o2c/image/npm-cache (see .dockerignore); hard links where possible.
stage=$root/.o2c/image
rm -rf "$stage"
mkdir -p "$stage/npm-cache"
cp -al "$npm_cache/_cacache" "$stage/npm-cache/" 2>/dev/null || cp -a "$npm_cache/_cacache" "$stage/npm-cache/"
flock -u 9
trap 'rm -rf "$stage"' EXIT

log "docker build o2c:$version (o2c:dev)"
docker build --build-arg BASE_IMAGE=o2c-node-base:24 --build-arg BUILD_IMAGE=o2c-node-build:24 \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  -t "o2c:$version" -t o2c:dev . >&2
log "o2c:$version is $(docker image inspect --format '{{.Size}}' "o2c:$version" | awk '{printf "%.1f MB", $1 / 1e6}')"
echo "o2c:$version"
