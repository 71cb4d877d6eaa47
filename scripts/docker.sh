#!/usr/bin/env bash
# Makes a Docker engine answer on this machine: installs Debian's docker.io when dockerd is missing
# and starts dockerd in the background when `docker info` fails (there is no systemd here).
# Idempotent and safe to run from several make targets at once; progress goes to stderr only.
set -euo pipefail

log() { printf 'docker: %s\n' "$*" >&2; }

cache=${XDG_CACHE_HOME:-$HOME/.cache}/o2c/docker
engine_answers() { docker info >/dev/null 2>&1; }

if engine_answers; then
  exit 0
fi

mkdir -p "$cache"
# Two callers at once (image build, cluster build) must not install or start the engine twice.
exec 9>"$cache/start.lock"
flock -w 600 9
if engine_answers; then
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  log "installing docker.io from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends docker.io >&2
fi
# The package brings its own client; a newer one already on PATH talks to the same engine.
command -v docker >/dev/null 2>&1 || { log "no docker client on PATH"; exit 1; }

if ! pgrep -x dockerd >/dev/null 2>&1; then
  # A stale pid file from a killed engine stops dockerd from starting.
  if [[ -f /var/run/docker.pid ]] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid
  fi
  # containerd comes with docker.io; dockerd starts its own when none answers on its socket.
  # The engine must not inherit the lock, or it would hold it for its whole life.
  log "starting dockerd (log: $cache/dockerd.log)"
  nohup dockerd --storage-driver overlay2 --exec-opt native.cgroupdriver=cgroupfs \
    >>"$cache/dockerd.log" 2>&1 </dev/null 9>&- &
  disown || true
fi

for ((i = 0; i < 120; i++)); do
  if engine_answers; then
    log "engine is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
    exit 0
  fi
  sleep 0.5
done
log "dockerd did not answer within 60s; last lines of $cache/dockerd.log:"
tail -n 20 "$cache/dockerd.log" >&2 || true
exit 1
