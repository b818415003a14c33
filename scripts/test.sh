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
step "the cuda feature builds (Debian's CUDA toolkit; no GPU is needed to compile)"
# The server binary, the CPU-vs-CUDA test and the bench's --device cuda: what
# scripts/gpu-check.sh runs on a GPU machine. Compute capability 8.0 (A100 and later).
CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}" cargo build -p sluice-server --features cuda --locked \
  --bin sluice-server --test gpu --bench throughput
step "cargo test (pure, in-memory and local-process tiers)"
cargo test --workspace --locked
# The ignored tiers, with what they need installed above: live (a real Prometheus), data (the
# shared Azure trace) and cluster (a real control plane from scripts/build-control-plane.sh,
# started per test binary by scripts/cluster.sh). The scale test runs 300 services here to keep
# CI short; docs/benchmarks.md records a 1,000-service run (SLUICE_SCALE_SERVICES=1000).
step "cargo test (live, data and cluster tiers)"
SLUICE_SCALE_SERVICES="${SLUICE_SCALE_SERVICES:-300}" cargo test --workspace --locked -- --ignored
step "openai Python client against sluice-server"
bash scripts/openai_smoke.sh
step "Locust (seed flags, short run) against sluice-server"
bash scripts/locust_smoke.sh
step "helm lint (helm-sdkpy)"
python3 charts/sluice/tests/lint.py
step "Argo CD health check (Lua)"
python3 charts/sluice/tests/test_argocd_health.py
step "fuzz every target for 20 s (cargo-fuzz, libFuzzer)"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" bash scripts/fuzz.sh
step "all checks passed"
