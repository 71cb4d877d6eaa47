#!/usr/bin/env bash
# Builds helm v3 from its Go module with the release's version ldflags (no prebuilt download),
# caches it outside git keyed by version, and prints the binary's path.
set -euo pipefail

HELM_VERSION="${O2C_HELM_VERSION:-v3.22.0}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/o2c/tools"
OUT="$CACHE_ROOT/helm-${HELM_VERSION}"

if [[ -x "$OUT/helm" ]]; then
  echo "$OUT/helm"
  exit 0
fi

command -v go >/dev/null || { echo "go is required to build helm" >&2; exit 1; }
mkdir -p "$OUT"
export CGO_ENABLED=0

# helm's own Makefile derives the default Kubernetes version (what .Capabilities.KubeVersion and
# a chart's kubeVersion are checked against when no cluster is asked) from its client-go: v0.N
# means Kubernetes 1.N. Without these ldflags it is v1.20 and `helm template` rejects our chart.
gomod="$(go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
client_go="$(awk '$1 == "k8s.io/client-go" { print $2 }' "$gomod")"
[[ "$client_go" =~ ^v0\.([0-9]+)\. ]] || { echo "cannot read k8s.io/client-go from helm's go.mod" >&2; exit 1; }
k8s_major=1
k8s_minor="${BASH_REMATCH[1]}"

pkg=helm.sh/helm/v3
ldflags="-w -s"
ldflags+=" -X $pkg/internal/version.version=${HELM_VERSION}"
ldflags+=" -X $pkg/internal/version.metadata="
ldflags+=" -X $pkg/internal/version.gitTreeState=clean"
for p in pkg/lint/rules pkg/chartutil; do
  ldflags+=" -X $pkg/$p.k8sVersionMajor=${k8s_major} -X $pkg/$p.k8sVersionMinor=${k8s_minor}"
done

echo "building helm ${HELM_VERSION} (default Kubernetes v${k8s_major}.${k8s_minor}.0)" >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" >&2
built="$("$tmp/helm" version --template '{{.Version}}')"
[[ "$built" == "$HELM_VERSION" ]] || { echo "built helm reports $built, expected $HELM_VERSION" >&2; exit 1; }
mv "$tmp/helm" "$OUT/helm"
echo "$OUT/helm"
