#!/usr/bin/env bash
# The whole test suite: formatting, lints, every crate's tests (the Prometheus integration test
# among them), then the tests that drive real external clients against real servers.
# `scripts/test.sh --install` first installs what those need (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--install" ]; then
  bash scripts/install-deps.sh
fi
step() { printf '\n=== %s\n' "$*"; }
step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo test"
cargo test --workspace --locked
step "openai Python client against sluice-server"
bash scripts/openai_smoke.sh
step "Locust (seed flags, short run) against sluice-server"
bash scripts/locust_smoke.sh
step "helm lint (helm-sdkpy)"
python3 charts/sluice/tests/lint.py
step "Argo CD health check (Lua)"
python3 charts/sluice/tests/test_argocd_health.py
step "all checks passed"
