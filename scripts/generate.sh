#!/usr/bin/env bash
# Regenerates protobuf-es code from proto/ into runtime/src/gen (committed; never edited by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
tsx scripts/proto-deps.ts proto/.deps >/dev/null
cd proto
buf generate --path o2c
