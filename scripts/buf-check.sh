#!/usr/bin/env bash
# buf lint always; buf breaking against main once main has a proto tree to compare with.
set -euo pipefail
cd "$(dirname "$0")/.."
tsx scripts/proto-deps.ts proto/.deps >/dev/null
(cd proto && buf lint --path o2c)
if git rev-parse --verify -q main >/dev/null && git cat-file -e main:proto/o2c/v1 2>/dev/null; then
  base="$(mktemp -d)"
  trap 'rm -rf "$base"' EXIT
  git archive main proto | tar -x -C "$base"
  tsx scripts/proto-deps.ts "$base/proto/.deps" >/dev/null
  (cd proto && buf breaking --against "$base/proto")
fi
