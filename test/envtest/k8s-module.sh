# Sourced by test/envtest/build.sh and test/cluster/build.sh: builds commands of k8s.io/kubernetes.
# k8s.io/kubernetes requires its staging modules at v0.0.0 with relative replaces, so a wrapper
# module replaces each of them with the published v0.Y.Z. Every caller gets the same go.mod, so
# the Go build cache shares the compiled packages between the envtest and the cluster builds.

# k8s_build VERSION OUTDIR CMD... : builds k8s.io/kubernetes/cmd/CMD into OUTDIR/CMD (via .tmp, so
# a binary in use is replaced atomically and never half-written).
k8s_build() {
  local version="$1" out="$2"
  shift 2
  local minor="${version#v1.}"
  minor="${minor%%.*}"
  local staging_version="v0.${version#v1.}"
  local work
  work="$(mktemp -d)"
  (
    set -euo pipefail
    export CGO_ENABLED=0 GOFLAGS=-mod=mod
    cd "$work"
    go mod init o2c.dev/envtest-k8s >/dev/null 2>&1
    local gomod
    gomod="$(go mod download -json "k8s.io/kubernetes@${version}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    {
      echo "require k8s.io/kubernetes ${version}"
      grep -E '^\s*k8s\.io/[a-z0-9-]+ v0\.0\.0\s*$' "$gomod" | awk '{print $1}' | sort -u |
        while read -r m; do echo "replace $m => $m ${staging_version}"; done
    } >>go.mod
    {
      printf '//go:build tools\n\npackage tools\n\nimport (\n'
      for c in "$@"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
      printf ')\n'
    } >tools.go
    go mod tidy >&2
    mkdir -p "$work/bin"
    local pkgs=()
    for c in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    # One go build for all commands: the packages they share compile once.
    go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=${version} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}" \
      -o "$work/bin/" "${pkgs[@]}" >&2
    mkdir -p "$out"
    for c in "$@"; do
      cp "$work/bin/$c" "$out/$c.tmp"
      mv "$out/$c.tmp" "$out/$c"
    done
  )
  local rc=$?
  rm -rf "$work"
  return $rc
}
