# Versions, addresses and cache paths of the local cluster; sourced by every script in test/cluster.
# Addresses: the pod and service ranges sit in 10.0.0.0/8 away from docker0 (172.17.0.0/16) and the
# host's own network; the node address lives on an interface of its own, so nothing listens outside.

K8S_VERSION="${O2C_K8S_VERSION:-v1.35.4}"
COREDNS_VERSION="${O2C_COREDNS_VERSION:-v1.14.7}"
LOCAL_PATH_VERSION="${O2C_LOCAL_PATH_VERSION:-v0.0.30}"
# The pause image tag kubelet 1.35 expects for its sandboxes; built here from kubernetes' pause.c.
PAUSE_TAG=3.10

O2C_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/o2c"
CLUSTER_BIN="$O2C_CACHE/cluster/k8s-${K8S_VERSION}"
COREDNS_BIN="$O2C_CACHE/cluster/coredns-${COREDNS_VERSION}"
LOCAL_PATH_BIN="$O2C_CACHE/cluster/local-path-provisioner-${LOCAL_PATH_VERSION}"
PAUSE_BIN="$O2C_CACHE/cluster/pause-${PAUSE_TAG}-${K8S_VERSION}"
# Per-cluster state (certificates, etcd data, containerd root, logs); removed by make cluster-down.
CLUSTER_HOME="${O2C_CLUSTER_HOME:-$O2C_CACHE/cluster/run}"
KUBECONFIG_PATH="$CLUSTER_HOME/kubeconfig"

NODE_NAME=o2c-node
NODE_IF=o2c0
NODE_IP=10.231.0.1
POD_CIDR=10.232.0.0/24
POD_GATEWAY=10.232.0.1
SERVICE_CIDR=10.233.0.0/24
KUBERNETES_SERVICE_IP=10.233.0.1
CLUSTER_DNS_IP=10.233.0.10
CLUSTER_DOMAIN=cluster.local
APISERVER_PORT=6443
BRIDGE=o2cbr0

PAUSE_IMAGE="o2c-pause:${PAUSE_TAG}"
COREDNS_IMAGE="o2c-coredns:${COREDNS_VERSION#v}"
LOCAL_PATH_IMAGE="o2c-local-path-provisioner:${LOCAL_PATH_VERSION#v}"
RABBITMQ_IMAGE="o2c-rabbitmq:3.10"
POSTGRESQL_IMAGE="o2c-postgresql:15"
# The namespace where make cluster runs RabbitMQ and PostgreSQL; values-dev.yaml's broker URL
# (rabbitmq.o2c-dev) points there.
SERVICES_NAMESPACE=o2c-dev
