#!/usr/bin/env bash
# The README's first command: builds the server and the CLI, then runs `sluice demo` on the
# built-in tiny model (no download, no cluster). Extra arguments go to `sluice demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p sluice-server -p sluice-cli
target="${CARGO_TARGET_DIR:-target}"
exec "$target/debug/sluice" demo --server-bin "$target/debug/sluice-server" "$@"
