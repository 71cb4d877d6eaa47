#!/usr/bin/env bash
# Starts the services the integration tests and benchmarks talk to (RabbitMQ, PostgreSQL) when they
# are down, waits until they answer, and enables the broker plugins the bus needs. Idempotent; CI
# runs it as root on a fresh Debian 12 machine, developers run it through `make services`.
set -euo pipefail

log() { printf 'services: %s\n' "$*" >&2; }

wait_for() { # wait_for <what> <seconds> <command...>
  local what=$1 seconds=$2
  shift 2
  for ((i = 0; i < seconds * 2; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  log "$what did not answer within ${seconds}s"
  return 1
}

# --- PostgreSQL -----------------------------------------------------------------------------------
pg_ready() { pg_isready -h 127.0.0.1 -p 5432 -q; }
if ! pg_ready; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  log "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi
wait_for PostgreSQL 60 pg_ready
log "PostgreSQL is up"

# --- RabbitMQ -------------------------------------------------------------------------------------
# `ping` answers as soon as the Erlang node runs; `is_running` only once the rabbit app has booted.
rabbit_node_up() { rabbitmqctl -q ping; }
# (both diagnostics exit 0 either way; their text says which)
rabbit_ready() { rabbitmq-diagnostics -q is_running 2>&1 | grep -q 'fully booted and running'; }
rabbit_booting() { rabbitmq-diagnostics -q is_booting 2>&1 | grep -q ' is booting'; }
if ! rabbit_node_up >/dev/null 2>&1; then
  log "starting RabbitMQ"
  # Quorum queues and connections each take file descriptors; 1024 runs out under the benchmarks.
  (ulimit -n 65536 2>/dev/null || true; rabbitmq-server -detached)
  wait_for 'RabbitMQ node' 90 rabbit_node_up
elif ! rabbit_ready >/dev/null 2>&1 && ! rabbit_booting >/dev/null 2>&1; then
  # The Erlang node runs but the app was stopped (e.g. a test that died between stop_app and
  # start_app). A node that is still booting is left alone.
  log "starting the RabbitMQ application"
  # (Tests never stop the shared broker: they restart private instances, test/integration/support.)
  rabbitmqctl -q start_app
fi
# RabbitMQ 3.10 books about three file handles per quorum queue in its own accounting, far more than
# it opens (about 40 real descriptors with 2,000 quorum queues here), against a limit taken from the
# soft limit of the process (1,024 when started through su, whatever ulimit the caller set). Once the
# books are full it accepts no connection, and a boot that recovers that many queues stalls.
# bench-operator's 1,000 Pipelines declare 2,000 queues, so the books get the room the descriptors
# really have, on every poll until the broker is up (the booting node answers eval).
rabbit_books() { rabbitmqctl -q eval 'file_handle_cache:set_limit(65536).' >/dev/null 2>&1 || true; }
rabbit_ready_with_books() { rabbit_books; rabbit_ready; }
# Boot recovers every quorum queue and stream first; with many of them that takes a while.
wait_for RabbitMQ 300 rabbit_ready_with_books

# The consistent-hash exchange realises ordering keys (runtime/src/bus/topology.ts). Streams
# (o2c.events.log) are a core queue type read over AMQP 0-9-1, so rabbitmq_stream is optional; it is
# enabled for tools that speak the stream protocol (port 5552).
plugins=(rabbitmq_consistent_hash_exchange rabbitmq_stream)
missing=()
for plugin in "${plugins[@]}"; do
  if ! rabbitmq-plugins -q list -e "^${plugin}\$" 2>/dev/null | grep -q "$plugin"; then missing+=("$plugin"); fi
done
if ((${#missing[@]} > 0)); then
  log "enabling RabbitMQ plugins: ${missing[*]}"
  rabbitmq-plugins -q enable "${missing[@]}"
fi
wait_for 'RabbitMQ AMQP listener' 60 rabbitmq-diagnostics -q check_port_connectivity
log "RabbitMQ is up"
