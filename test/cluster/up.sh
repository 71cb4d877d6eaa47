#!/usr/bin/env bash
# make cluster: a real single-node Kubernetes on this machine, assembled from parts built here
# (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, CoreDNS) and
# Debian's containerd, runc and CNI plugins. Idempotent: parts already running are left alone, and
# a cluster that runs entirely is reported as such. Prints the kubeconfig's path on stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
source "$here/env.sh"

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
[[ $(id -u) -eq 0 ]] || die "make cluster needs root (network interfaces, iptables, mounts)"

run="$CLUSTER_HOME"
pki="$run/pki"
mkdir -p "$run/pids" "$run/logs" "$pki"
exec 9>"$run/.lock"
if ! flock -n 9; then
  log "waiting for another make cluster or cluster-down to finish"
  flock -w 900 9 || die "another make cluster or cluster-down holds $run/.lock"
fi
started=0

# put FILE: writes stdin to FILE only when it differs, so a re-run does not touch the config files
# the parts watch (kube-proxy exits when its configuration file changes).
put() {
  local tmp="$1.tmp"
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; put_changed=1; fi
}
put_changed=0

# restart_if_changed NAME: a running part whose configuration put just changed is stopped, so the
# start that follows runs it with the new one.
restart_if_changed() {
  local name="$1" pid i
  if ((put_changed)) && alive "$name"; then
    pid="$(cat "$run/pids/$name")"
    log "configuration of $name changed: restarting it"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  put_changed=0
}

alive() { [[ -f "$run/pids/$1" ]] && kill -0 "$(cat "$run/pids/$1")" 2>/dev/null; }

# start NAME BIN ARGS...: runs BIN in its own session (so make's signals do not reach it), with
# its output in logs/NAME.log and its pid in pids/NAME; a part that is alive already is kept.
start() {
  local name="$1"
  shift
  if alive "$name"; then return 0; fi
  log "starting $name"
  # 9>&-: the part must not inherit (and hold forever) the lock taken above.
  setsid "$@" >>"$run/logs/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$run/pids/$name"
  started=1
}

# wait_for WHAT SECONDS NAME CMD...: polls CMD until it succeeds; fails early with the log's tail
# when the process NAME has exited.
wait_for() {
  local what="$1" secs="$2" name="$3"
  shift 3
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [[ -n "$name" ]] && ! alive "$name"; then
      tail -n 30 "$run/logs/$name.log" >&2 || true
      die "$name exited before $what"
    fi
    ((SECONDS < deadline)) || { tail -n 30 "$run/logs/$name.log" >&2 || true; die "timed out waiting for $what"; }
    sleep 1
  done
}

# --- host packages and binaries ------------------------------------------------------------------
need_pkgs=()
command -v containerd >/dev/null || need_pkgs+=(containerd)
command -v runc >/dev/null || need_pkgs+=(runc)
[[ -x /usr/lib/cni/bridge ]] || need_pkgs+=(containernetworking-plugins)
command -v conntrack >/dev/null || need_pkgs+=(conntrack)
command -v iptables >/dev/null || need_pkgs+=(iptables)
command -v openssl >/dev/null || need_pkgs+=(openssl)
[[ -x /bin/busybox ]] || need_pkgs+=(busybox-static)
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${need_pkgs[@]}" >&2
fi
CNI_BIN=/usr/lib/cni

envtest_bin="$(bash "$repo/test/envtest/build.sh")"
bash "$here/build.sh"
export PATH="$CLUSTER_BIN:$PATH"

# --- network: the node address on its own interface, forwarding, bridged traffic through iptables --
# A bridge without ports stands in for a dummy interface (this kernel has no dummy driver): it holds
# the node address, which is local to this machine and reachable from the pods through their gateway.
if ! ip link show "$NODE_IF" >/dev/null 2>&1; then
  ip link add "$NODE_IF" type bridge
fi
ip link set "$NODE_IF" up
ip addr show dev "$NODE_IF" | grep -q " $NODE_IP/" || ip addr add "$NODE_IP/32" dev "$NODE_IF"
# Unassigned service addresses end on the dummy device instead of leaving the machine.
ip route replace "$SERVICE_CIDR" dev "$NODE_IF"
[[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] || modprobe br_netfilter 2>/dev/null ||
  die "the br_netfilter module is missing: Service traffic between pods on the bridge would bypass kube-proxy"
sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1

# --- certificates and kubeconfigs (one cluster CA, like kubeadm) -------------------------------------
ossl() { openssl "$@" 2>/dev/null; }
ec_key() { [[ -f "$pki/$1.key" ]] || ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/$1.key"; }
# cert NAME SUBJECT EXTENSIONS: a key and a certificate signed by the cluster CA.
cert() {
  local name="$1" subject="$2" ext="$3"
  [[ -f "$pki/$name.crt" ]] && return 0
  ec_key "$name"
  ossl req -new -key "$pki/$name.key" -out "$pki/$name.csr" -subj "$subject"
  printf '%b' "$ext" >"$pki/$name.ext"
  ossl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -out "$pki/$name.crt" -days 365 -extfile "$pki/$name.ext"
}
if [[ ! -f "$pki/ca.crt" ]]; then
  log "generating certificates"
  ec_key ca
  ossl req -x509 -new -key "$pki/ca.key" -out "$pki/ca.crt" -days 365 -subj /CN=o2c-cluster-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
fi
client='extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n'
server='extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n'
cert apiserver /CN=kube-apiserver "subjectAltName=DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.${CLUSTER_DOMAIN},DNS:localhost,IP:127.0.0.1,IP:${NODE_IP},IP:${KUBERNETES_SERVICE_IP}\n$server"
cert apiserver-kubelet-client /O=system:masters/CN=kube-apiserver-kubelet-client "$client"
cert kubelet-serving "/O=system:nodes/CN=system:node:${NODE_NAME}" "subjectAltName=DNS:${NODE_NAME},IP:${NODE_IP}\n$server"
cert admin /O=system:masters/CN=o2c-cluster-admin "$client"
cert kube-controller-manager /CN=system:kube-controller-manager "$client"
cert kube-scheduler /CN=system:kube-scheduler "$client"
cert kubelet "/O=system:nodes/CN=system:node:${NODE_NAME}" "$client"
cert kube-proxy /CN=system:kube-proxy "$client"
if [[ ! -f "$pki/sa.pub" ]]; then
  ec_key sa
  ossl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
fi
server_url="https://${NODE_IP}:${APISERVER_PORT}"
b64() { base64 -w0 "$pki/$1"; }
kubeconfig() {
  local user="$1" file="$2"
  cat >"$file" <<YAML
apiVersion: v1
kind: Config
clusters:
  - name: o2c-local
    cluster: {server: "$server_url", certificate-authority-data: "$(b64 ca.crt)"}
users:
  - name: $user
    user: {client-certificate-data: "$(b64 "$user.crt")", client-key-data: "$(b64 "$user.key")"}
contexts:
  - name: o2c-local
    context: {cluster: o2c-local, user: $user, namespace: default}
current-context: o2c-local
YAML
  chmod 600 "$file"
}
for u in kube-controller-manager kube-scheduler kubelet kube-proxy; do
  [[ -f "$run/$u.kubeconfig" ]] || kubeconfig "$u" "$run/$u.kubeconfig"
done
[[ -f "$KUBECONFIG_PATH" ]] || kubeconfig admin "$KUBECONFIG_PATH"
kc() { kubectl --kubeconfig "$KUBECONFIG_PATH" "$@"; }

# --- containerd: its own root, state and socket, beside Docker's ------------------------------------
ctrd="$run/containerd"
ctrd_sock="$ctrd/containerd.sock"
mkdir -p "$ctrd" "$run/cni/net.d"
put "$ctrd/config.toml" <<TOML
version = 2
root = "$ctrd/root"
state = "$ctrd/state"
[grpc]
  address = "$ctrd_sock"
[ttrpc]
  address = "$ctrd_sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$ctrd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Without CAP_SYS_RESOURCE (as here) runc cannot set the negative oom_score_adj kubelet asks for
  # critical pods; clamp it to containerd's own instead of failing every sandbox.
  restrict_oom_score_adj = true
  # Pods' network namespaces under our state directory, not the host's /var/run/netns.
  netns_mounts_under_state_dir = true
  # What newer containerd does by default: a non-root pod may bind ports below 1024 and ping.
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$ctrd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$run/cni/net.d"
TOML
# bridge + host-local give each pod an address on $BRIDGE; firewall lets it through the FORWARD
# chain (Docker sets that chain's policy to DROP); portmap serves hostPort.
restart_if_changed containerd
# containerd reloads the CNI configuration itself when it changes.
put "$run/cni/net.d/10-o2c.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "o2c",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$run/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "firewall", "backend": "iptables"},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
put_changed=0
start containerd containerd --config "$ctrd/config.toml"
ctr() { command ctr --address "$ctrd_sock" "$@"; }
wait_for "containerd" 60 containerd ctr version

# --- images the cluster itself needs -----------------------------------------------------------------
bash "$here/images.sh" system

# --- control plane ----------------------------------------------------------------------------------
etcd_url=http://127.0.0.1:12379
start etcd "$envtest_bin/etcd" --name o2c --data-dir "$run/etcd" \
  --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
  --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
  --initial-cluster o2c=http://127.0.0.1:12380 --listen-metrics-urls http://127.0.0.1:12381 \
  --unsafe-no-fsync=true --log-level=warn
wait_for "etcd" 60 etcd curl -fsS "$etcd_url/health"

start kube-apiserver "$envtest_bin/kube-apiserver" \
  --etcd-servers="$etcd_url" \
  --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$APISERVER_PORT" \
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$pki/ca.crt" --kubelet-preferred-address-types=InternalIP \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --service-account-issuer="https://kubernetes.default.svc.${CLUSTER_DOMAIN}" \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --allow-privileged=true --profiling=false
wait_for "kube-apiserver" 120 kube-apiserver kc get --raw /readyz

common=(--bind-address=127.0.0.1 --leader-elect=false --profiling=false)
start kube-controller-manager kube-controller-manager "${common[@]}" \
  --kubeconfig="$run/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig="$run/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig="$run/kube-controller-manager.kubeconfig" \
  --cluster-name=o2c-local --root-ca-file="$pki/ca.crt" \
  --service-account-private-key-file="$pki/sa.key" --use-service-account-credentials=true \
  --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" --allocate-node-cidrs=false
start kube-scheduler kube-scheduler "${common[@]}" \
  --kubeconfig="$run/kube-scheduler.kubeconfig" \
  --authentication-kubeconfig="$run/kube-scheduler.kubeconfig" \
  --authorization-kubeconfig="$run/kube-scheduler.kubeconfig"

# --- node: kubelet and kube-proxy --------------------------------------------------------------------
mkdir -p "$run/kubelet"
put "$run/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host has cgroup v1 (v2 only mounted beside it); kubelet 1.35 refuses it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$ctrd_sock
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: [$CLUSTER_DNS_IP]
failSwapOn: false
# A shared build machine: never evict pods or delete images because the disk is busy.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 110
YAML
restart_if_changed kubelet
start kubelet kubelet --config="$run/kubelet.yaml" --kubeconfig="$run/kubelet.kubeconfig" \
  --root-dir="$run/kubelet" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" -v=1

put "$run/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $run/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# NodePorts answer on the node address only, never on the machine's external interface.
nodePortAddresses: ["$NODE_IP/32"]
# Leave the host's conntrack sysctls as they are (0 = do not set).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
restart_if_changed kube-proxy
start kube-proxy kube-proxy --config="$run/kube-proxy.yaml"

wait_for "node $NODE_NAME to be Ready" 180 kubelet \
  kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s

# --- add-ons: cluster DNS, the default StorageClass, RabbitMQ and PostgreSQL --------------------------
for f in "$here"/addons/*.yaml; do
  sed -e "s|@CLUSTER_DNS_IP@|$CLUSTER_DNS_IP|g" -e "s|@CLUSTER_DOMAIN@|$CLUSTER_DOMAIN|g" \
    -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" -e "s|@LOCAL_PATH_IMAGE@|$LOCAL_PATH_IMAGE|g" \
    -e "s|@VOLUMES_DIR@|$run/volumes|g" "$f"
  echo ---
done | kc apply -f - >>"$run/logs/addons.log"
kc -n kube-system rollout status deployment/coredns --timeout=180s >/dev/null
kc -n local-path-storage rollout status deployment/local-path-provisioner --timeout=180s >/dev/null
bash "$here/services.sh"

if ((started)); then
  log "cluster is up (node $NODE_NAME, API $server_url)"
else
  log "cluster is already running (node $NODE_NAME, API $server_url); nothing to do"
fi
log "kubeconfig: export KUBECONFIG=$KUBECONFIG_PATH"
echo "$KUBECONFIG_PATH"
