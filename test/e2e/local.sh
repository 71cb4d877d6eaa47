#!/usr/bin/env bash
# make e2e-local: the e2e scenario (test/e2e/distributor.e2e.test.ts) on make cluster's node here.
# Brings the cluster up when it is not running (and takes it down again afterwards unless
# O2C_E2E_KEEP_CLUSTER=1), builds the o2c image, loads it into the cluster's containerd, runs the
# scenario. O2C_E2E_CAPTURE=1 also writes the Argo CD fixtures test/argocd/fixtures/e2e-*.json.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
source test/cluster/env.sh
log() { printf 'e2e-local: %s\n' "$*" >&2; }
t0=$SECONDS

started=0
if ! "$CLUSTER_BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" get --raw /readyz >/dev/null 2>&1; then
  started=1
fi
kubeconfig="$(bash test/cluster/up.sh)"
t_cluster=$SECONDS
cleanup() {
  if ((started)) && [[ "${O2C_E2E_KEEP_CLUSTER:-}" != 1 ]]; then bash test/cluster/down.sh; fi
}
trap cleanup EXIT

make --no-print-directory image >&2
app_version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/o2c/Chart.yaml)"
bash test/cluster/images.sh load "o2c:${app_version}" o2c:dev
helm="$(bash scripts/tools/helm.sh)"
t_image=$SECONDS

export KUBECONFIG="$kubeconfig" O2C_E2E_TARGET=local O2C_KUBECTL="$CLUSTER_BIN/kubectl" O2C_HELM="$helm" \
  O2C_CONTAINERD_SOCKET="$CLUSTER_HOME/containerd/containerd.sock"
export PATH="$repo/node_modules/.bin:$CLUSTER_BIN:$PATH"
rc=0
vitest run --config vitest.e2e.config.ts || rc=$?
log "cluster $((t_cluster - t0))s, image and tools $((t_image - t_cluster))s, scenario $((SECONDS - t_image))s"
exit $rc
