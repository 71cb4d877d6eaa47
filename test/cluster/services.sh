#!/usr/bin/env bash
# RabbitMQ and PostgreSQL in the cluster (namespace o2c-dev), as StatefulSets from images built here
# from Debian's packages. Part of make cluster; idempotent (the PostgreSQL password is made once).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"
log() { printf 'cluster-services: %s\n' "$*" >&2; }
# O2C_SERVICES_KUBECONFIG: another cluster whose nodes have the images already (make e2e on kind).
kubeconfig="${O2C_SERVICES_KUBECONFIG:-$KUBECONFIG_PATH}"
kc() { "$CLUSTER_BIN/kubectl" --kubeconfig "$kubeconfig" -n "$SERVICES_NAMESPACE" "$@"; }
logs="$CLUSTER_HOME/logs"
if [[ -z "${O2C_SERVICES_KUBECONFIG:-}" ]]; then
  bash "$here/images.sh" services
else
  logs="$(mktemp -d)"
fi
kc create namespace "$SERVICES_NAMESPACE" --dry-run=client -o yaml | kc apply -f - >/dev/null
if ! kc get secret postgresql >/dev/null 2>&1; then
  pw="$(openssl rand -hex 16)"
  kc create secret generic postgresql --from-literal=password="$pw" >/dev/null
  kc create secret generic o2c-store \
    --from-literal=uri="postgres://postgres:${pw}@postgresql.${SERVICES_NAMESPACE}:5432/o2c" >/dev/null
fi
for f in "$here"/services/*.yaml; do
  sed -e "s|@RABBITMQ_IMAGE@|$RABBITMQ_IMAGE|g" -e "s|@POSTGRESQL_IMAGE@|$POSTGRESQL_IMAGE|g" "$f"
  echo ---
done | kc apply -f - >>"$logs/addons.log"
kc rollout status statefulset/rabbitmq --timeout=300s >/dev/null
kc rollout status statefulset/postgresql --timeout=300s >/dev/null
log "RabbitMQ: amqp://guest:guest@rabbitmq.${SERVICES_NAMESPACE}:5672; PostgreSQL: Secret ${SERVICES_NAMESPACE}/o2c-store (key uri)"
