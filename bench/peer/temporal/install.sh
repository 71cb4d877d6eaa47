#!/usr/bin/env bash
# Installs the Temporal peer for make bench-workflow, idempotently: the Temporal CLI (its dev
# server) built from the Go module github.com/temporalio/cli into bench/peer/.cache/bin, and the
# TypeScript SDK (worker, client, workflow, activity) from bench/peer/temporal/package-lock.json
# into bench/peer/temporal/node_modules. Prints the temporal binary's path.
set -euo pipefail

# v1.5.1 is the last release `go install` accepts: later ones carry a replace directive in go.mod.
TEMPORAL_CLI_VERSION="${O2C_TEMPORAL_CLI_VERSION:-v1.5.1}"
here="$(cd "$(dirname "$0")" && pwd)"
bin="$(cd "$here/.." && pwd)/.cache/bin"
out="$bin/temporal-${TEMPORAL_CLI_VERSION}"

if [[ ! -x "$out" ]]; then
  command -v go >/dev/null || { echo "go is required to build the Temporal CLI" >&2; exit 1; }
  mkdir -p "$bin"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  # The dev server's SQLite is pure Go (modernc.org/sqlite): no C toolchain needed.
  # The release's own ldflags (its .goreleaser.yml), so `temporal --version` names the release.
  CGO_ENABLED=0 GOBIN="$work" go install -trimpath \
    -ldflags "-s -w -X github.com/temporalio/cli/temporalcli.Version=${TEMPORAL_CLI_VERSION#v}" \
    "github.com/temporalio/cli/cmd/temporal@${TEMPORAL_CLI_VERSION}" >&2
  mv "$work/temporal" "$out"
fi

stamp="$here/node_modules/.o2c-installed"
if [[ ! -f "$stamp" || "$here/package-lock.json" -nt "$stamp" || "$here/package.json" -nt "$stamp" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund >&2)
  touch "$stamp"
fi

echo "$out"
