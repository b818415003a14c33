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
step "the pure SLO engine builds without an HTTP client"
cargo check -p sluice-slo --no-default-features --locked
step "cargo test (pure, in-memory and local-process tiers)"
cargo test --workspace --locked
# The ignored tiers, with what they need installed above: live (a real Prometheus) and data (the
# shared Azure trace). The cluster tier (tests/e2e.rs) needs a Kubernetes cluster and is left to
# `cargo test -p sluice-operator --test e2e -- --ignored`.
step "cargo test (live and data tiers)"
cargo test --workspace --locked -- --ignored --skip tiny_service_end_to_end
step "openai Python client against sluice-server"
bash scripts/openai_smoke.sh
step "Locust (seed flags, short run) against sluice-server"
bash scripts/locust_smoke.sh
step "helm lint (helm-sdkpy)"
python3 charts/sluice/tests/lint.py
step "Argo CD health check (Lua)"
python3 charts/sluice/tests/test_argocd_health.py
step "all checks passed"
