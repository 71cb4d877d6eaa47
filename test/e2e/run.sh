#!/usr/bin/env bash
# make e2e: the e2e scenario (test/e2e/distributor.e2e.test.ts, the same one make e2e-local runs)
# on a kind cluster, for machines with a Docker engine and a reachable container registry. Where
# kind's node image cannot be had it says why and skips, successfully; make e2e-local is the path
# on machines without a registry (docs/local-cluster.md).
#   O2C_KIND_NODE_IMAGE  kind's node image (default kindest/node:v1.35.0, the Kubernetes the chart targets)
#   O2C_E2E_KEEP_CLUSTER=1 keeps the kind cluster afterwards
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
source test/cluster/env.sh
skip() {
  echo "e2e: skipped: $*"
  exit 0
}
node_image="${O2C_KIND_NODE_IMAGE:-kindest/node:v1.35.0}"

command -v docker >/dev/null 2>&1 || skip "no docker client (kind runs its node in a Docker container)"
docker info >/dev/null 2>&1 || skip "no Docker engine answers (docker info failed)"
if ! docker image inspect "$node_image" >/dev/null 2>&1 && ! docker pull -q "$node_image" >/dev/null 2>&1; then
  skip "no registry: kind's node image $node_image cannot be pulled, so kind cannot start a cluster here; run make e2e-local (the same scenario on make cluster's node)"
fi
command -v kind >/dev/null 2>&1 || skip "kind is not installed (go install sigs.k8s.io/kind@latest)"

bash test/cluster/build.sh k8s
helm="$(bash scripts/tools/helm.sh)"
make --no-print-directory image >&2
bash test/cluster/images.sh build-services
app_version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/o2c/Chart.yaml)"

name="o2c-e2e-$$"
kubeconfig="$(mktemp)"
cleanup() {
  if [[ "${O2C_E2E_KEEP_CLUSTER:-}" != 1 ]]; then kind delete cluster --name "$name" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
kind create cluster --name "$name" --image "$node_image" --kubeconfig "$kubeconfig" --wait 180s
kind load docker-image --name "$name" "o2c:${app_version}" o2c:dev "$RABBITMQ_IMAGE" "$POSTGRESQL_IMAGE"
O2C_SERVICES_KUBECONFIG="$kubeconfig" bash test/cluster/services.sh

export KUBECONFIG="$kubeconfig" O2C_E2E_TARGET=kind O2C_KUBECTL="$CLUSTER_BIN/kubectl" O2C_HELM="$helm"
export PATH="$repo/node_modules/.bin:$PATH"
vitest run --config vitest.e2e.config.ts
