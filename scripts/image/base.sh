#!/usr/bin/env bash
# Builds, when missing, the local base images `make image` passes to the Dockerfile, because no
# container registry can be reached here:
#   o2c-debian:bookworm    debootstrap --variant=minbase, trimmed like Debian's slim image
#   o2c-node-base:24       that + the Node 24 binary of the npm `node` package (the runtime stage)
#   o2c-node-build:24      that + npm (the build stage; npm stays out of the runtime image)
# The Debian mirror comes from this machine's apt sources. Each image is skipped when it exists
# with the same inputs (labels); the Debian root is cached as a tarball keyed by suite and variant.
set -euo pipefail

log() { printf 'image/base: %s\n' "$*" >&2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/o2c/image
suite=bookworm
variant=minbase
debian_image=o2c-debian:$suite
node_image=o2c-node-base:24
build_image=o2c-node-build:24
node_bin=$root/node_modules/node/bin/node

mkdir -p "$cache"
# `make image` and the cluster build may run this at the same time.
exec 9>"$cache/base.lock"
flock -w 1800 9

export DOCKER_BUILDKIT=0

image_label() { # image_label <image> <label>: the label's value, empty when the image is missing
  docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# --- o2c-debian:bookworm --------------------------------------------------------------------------
# The first configured mirror that serves the suite itself (not -updates or -security).
mirror_for() { # mirror_for <suite>
  apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' 2>/dev/null |
    awk -v s="$1" '$2 == s { print $1; exit }'
}

# The image's own apt sources: the machine's mirrors for the suite and its -updates / -security.
image_sources() { # image_sources <suite>
  apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Identifier: Packages' 2>/dev/null |
    awk -v s="$1" '$2 == s || $2 == s "-updates" || $2 == s "-security" { print "deb " $1 " " $2 " " $3 }' |
    sort -u
}

build_debian_rootfs() { # build_debian_rootfs <tarball>
  local tarball=$1 mirror dir
  mirror=$(mirror_for "$suite")
  [[ -n $mirror ]] || {
    log "no apt source on this machine serves '$suite'; cannot pick a mirror for debootstrap"
    exit 1
  }
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2
  fi
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  log "debootstrap --variant=$variant $suite from $mirror (about 2 minutes)"
  debootstrap --variant="$variant" "$suite" "$dir" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
    tail -n 20 "$cache/debootstrap.log" >&2
    exit 1
  }
  image_sources "$suite" >"$dir/etc/apt/sources.list"
  # What Debian's slim image leaves out, for this root and for packages installed on top of it.
  cat >"$dir/etc/dpkg/dpkg.cfg.d/o2c-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
CFG
  cat >"$dir/etc/apt/apt.conf.d/o2c-slim" <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
Acquire::Languages "none";
CFG
  find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$dir/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$dir"/usr/share/{man,info,lintian}/* "$dir"/var/cache/apt/archives/*.deb \
    "$dir"/var/cache/apt/*.bin "$dir"/var/lib/apt/lists/* "$dir"/var/log/* "$dir"/tmp/*
  find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  tar -C "$dir" --numeric-owner --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
  rm -rf "$dir"
  trap - EXIT
}

if [[ -z $(image_label "$debian_image" dev.o2c.suite) ]]; then
  tarball=$cache/debian-$suite-$variant.tar
  [[ -f $tarball ]] || build_debian_rootfs "$tarball"
  log "importing $debian_image"
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL dev.o2c.suite=$suite dev.o2c.variant=$variant" \
    --change 'CMD ["bash"]' \
    - "$debian_image" <"$tarball" >/dev/null
fi

# --- o2c-node-base:24 -----------------------------------------------------------------------------
[[ -x $node_bin ]] || {
  log "$node_bin is missing: run make deps"
  exit 1
}
node_version=$("$node_bin" --version)
debian_id=$(docker image inspect --format '{{.Id}}' "$debian_image")

if [[ $(image_label "$node_image" dev.o2c.node) != "$node_version" ||
  $(image_label "$node_image" dev.o2c.from) != "$debian_id" ]]; then
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  # The npm package's binary carries debug info (~18 MB); node runs the same without it.
  strip -o "$ctx/node" "$node_bin"
  cat >"$ctx/Dockerfile" <<'DOCKERFILE'
ARG FROM
FROM ${FROM}
ARG NODE_VERSION
ARG FROM_ID
COPY node /usr/local/bin/node
# The account the image runs as (USER 65532:65532), so tools that look the uid up find a name.
RUN node --version \
 && echo 'nonroot:x:65532:' >>/etc/group \
 && echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin' >>/etc/passwd
LABEL dev.o2c.node=${NODE_VERSION} dev.o2c.from=${FROM_ID}
CMD ["node"]
DOCKERFILE
  log "building $node_image (node $node_version)"
  docker build -q --build-arg FROM="$debian_image" --build-arg NODE_VERSION="$node_version" \
    --build-arg FROM_ID="$debian_id" -t "$node_image" "$ctx" >/dev/null
  rm -rf "$ctx"
  trap - EXIT
fi

# --- o2c-node-build:24 ----------------------------------------------------------------------------
# npm as the machine's own npm runs it (make deps needs one), fetched once as a package tarball.
npm_version=$(npm --version)
node_id=$(docker image inspect --format '{{.Id}}' "$node_image")
if [[ $(image_label "$build_image" dev.o2c.npm) != "$npm_version" ||
  $(image_label "$build_image" dev.o2c.from) != "$node_id" ]]; then
  npm_tgz=$cache/npm-$npm_version.tgz
  if [[ ! -f $npm_tgz ]]; then
    log "fetching npm $npm_version"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "npm@$npm_version" >/dev/null)
    mv "$tmp/npm-$npm_version.tgz" "$npm_tgz"
    rm -rf "$tmp"
  fi
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  cp "$npm_tgz" "$ctx/npm.tgz"
  cat >"$ctx/Dockerfile" <<'DOCKERFILE'
ARG FROM
FROM ${FROM}
ARG NPM_VERSION
ARG FROM_ID
ADD npm.tgz /usr/local/lib/node_modules/
RUN mv /usr/local/lib/node_modules/package /usr/local/lib/node_modules/npm \
 && ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && npm --version
LABEL dev.o2c.npm=${NPM_VERSION} dev.o2c.from=${FROM_ID}
DOCKERFILE
  log "building $build_image (npm $npm_version)"
  docker build -q --build-arg FROM="$node_image" --build-arg NPM_VERSION="$npm_version" \
    --build-arg FROM_ID="$node_id" -t "$build_image" "$ctx" >/dev/null
  rm -rf "$ctx"
  trap - EXIT
fi

log "base images ready: $debian_image $node_image $build_image"
