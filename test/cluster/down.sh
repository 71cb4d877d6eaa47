#!/usr/bin/env bash
# make cluster-down: stops every process make cluster started (by the pids it recorded), tears down
# the pods' sandboxes so their network rules go with them, removes the node's interfaces, routes
# and iptables chains, and deletes the cluster's state (certificates, etcd, containerd root,
# volumes). The built binaries and Docker images stay cached. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"

log() { printf 'cluster-down: %s\n' "$*" >&2; }
run="$CLUSTER_HOME"
existed=0
[[ -d "$run" ]] || ip link show "$NODE_IF" >/dev/null 2>&1 && existed=1
mkdir -p "$run/pids"
exec 9>"$run/.lock"
flock -w 900 9
export PATH="$CLUSTER_BIN:$PATH"
ctrd_sock="$run/containerd/containerd.sock"

alive() { [[ -f "$run/pids/$1" ]] && kill -0 "$(cat "$run/pids/$1")" 2>/dev/null; }
stop() {
  local name="$1" pid i
  alive "$name" || { rm -f "$run/pids/$name"; return 0; }
  pid="$(cat "$run/pids/$name")"
  log "stopping $name ($pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$run/pids/$name"
}

# Controllers first, so nothing recreates the pods deleted next; kubelet then stops each sandbox
# through the CRI, which runs the CNI DEL that removes the pod's address and iptables rules.
stop kube-controller-manager
stop kube-scheduler
if alive kubelet && alive kube-apiserver; then
  kc() { kubectl --kubeconfig "$KUBECONFIG_PATH" --request-timeout=20s "$@"; }
  kc delete pods --all --all-namespaces --grace-period=1 --wait=false >/dev/null 2>&1 || true
  for ((i = 0; i < 90; i++)); do
    [[ -z "$(ctr --address "$ctrd_sock" -n k8s.io tasks ls -q 2>/dev/null)" ]] && break
    sleep 1
  done
fi
stop kubelet
# Whatever is left (kubelet gone early): kill the tasks; their network rules are flushed below.
if alive containerd; then
  for t in $(ctr --address "$ctrd_sock" -n k8s.io tasks ls -q 2>/dev/null); do
    ctr --address "$ctrd_sock" -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
  done
fi
if alive kube-proxy || [[ -x "$CLUSTER_BIN/kube-proxy" ]]; then
  stop kube-proxy
  # Removes the KUBE-* chains kube-proxy wrote (iptables, and nftables if any).
  "$CLUSTER_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
fi
stop kube-apiserver
stop etcd
stop containerd
# containerd's shims outlive it; each wrote its pid into our state directory.
for f in "$run"/containerd/state/io.containerd.runtime.v2.task/*/*/shim.pid; do
  [[ -f "$f" ]] && kill -KILL "$(cat "$f")" 2>/dev/null || true
done

# Leftovers of sandboxes killed without a CNI DEL and of kubelet: rules naming our CNI network or
# pod range, then the chains only we create (CNI-<hash> of network "o2c", the firewall plugin's
# CNI-FORWARD and CNI-ADMIN, KUBE-* of kubelet and kube-proxy).
pod_net="${POD_CIDR%.*}."
for table in nat filter mangle; do
  rules="$(iptables-save -t "$table" 2>/dev/null)" || continue
  grep -E '^-A ' <<<"$rules" | grep -E 'name: \\"o2c\\"|-[sd] '"${pod_net//./\\.}"'|-j (KUBE-|CNI-FORWARD)' |
    sed 's/^-A /-D /' | while read -r rule; do eval "iptables -t $table $rule" 2>/dev/null || true; done || true
  chains="$(grep -oE '^:(KUBE-[A-Z0-9-]+|CNI-[0-9a-f]{24}|CNI-FORWARD|CNI-ADMIN)' <<<"$rules" | tr -d :)" || true
  for chain in $chains; do iptables -t "$table" -F "$chain" 2>/dev/null || true; done
  for chain in $chains; do iptables -t "$table" -X "$chain" 2>/dev/null || true; done
done

if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link delete "$BRIDGE"; fi
ip route del "$SERVICE_CIDR" dev "$NODE_IF" 2>/dev/null || true
if ip link show "$NODE_IF" >/dev/null 2>&1; then ip link delete "$NODE_IF"; fi

# Mounts under the cluster's directory (pod volumes, sandboxes' shm, overlay snapshots), deepest first.
findmnt -rn -o TARGET | grep -F "$run/" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done || true
rm -rf "$run"
if ((existed)); then log "cluster removed"; else log "no cluster here; nothing to do"; fi
