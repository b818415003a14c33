#!/usr/bin/env bash
# Installs what the test suite drives for real: Prometheus (Debian), the openai client,
# Locust, sentencepiece, gguf, tokenizers and tiktoken (PyPI: the GGUF tokenizer tests), cargo-fuzz (crates.io), Helm's linter via helm-sdkpy (PyPI; it declares Python 3.12, hence
# --ignore-requires-python) and lupa for the Argo CD Lua health-check tests; then builds the
# Kubernetes control plane of the cluster tests and Jaeger from Go modules
# (scripts/build-control-plane.sh, scripts/build-jaeger.sh: cached in /var/tmp, so only the first
# run on a machine compiles them).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
# The toolchain rust-toolchain.toml pins. Offline machines carry a stable toolchain of that
# release; name it so rustup does not try to download it.
pinned=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
if command -v rustup >/dev/null && ! rustup toolchain list | grep -q "^$pinned"; then
  stable_version=$(rustup run stable rustc --version | awk '{print $2}')
  if [ "$stable_version" = "$pinned" ]; then
    rustup toolchain link "$pinned" "$(rustup run stable rustc --print sysroot)"
  else
    rustup toolchain install "$pinned" --profile minimal --component rustfmt,clippy
  fi
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v prometheus >/dev/null || ! command -v curl >/dev/null || ! command -v openssl >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends prometheus curl ca-certificates openssl >/dev/null
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
fi
# Debian's own python3 refuses user-level installs (PEP 668) unless told otherwise; a pyenv or
# venv python ignores this.
export PIP_BREAK_SYSTEM_PACKAGES=1
python3 -m pip install -q --disable-pip-version-check openai locust lupa sentencepiece gguf tokenizers tiktoken
python3 -m pip install -q --disable-pip-version-check --ignore-requires-python helm-sdkpy
# cargo-fuzz drives the fuzz targets in fuzz/ (scripts/fuzz.sh); built outside any clone's
# target directory so it is compiled once per machine.
if ! command -v cargo-fuzz >/dev/null; then
  CARGO_TARGET_DIR=/var/tmp/sluice-tools-target cargo install -q cargo-fuzz --locked --version 0.13.2
fi
# The control plane needs Go >= 1.26 (kwok's go.mod); the machines carry it. Debian's golang-go
# is far older, so there is no fallback to it.
if ! command -v go >/dev/null; then
  echo "install-deps.sh: no 'go' on PATH; the cluster tests need Go >= 1.26 to build the control plane" >&2
  exit 1
fi
bash scripts/build-control-plane.sh >/dev/null
# Jaeger all-in-one for the tracing tests (real OTLP ingest and query API), from its Go module;
# cached outside the clone like the control plane.
bash scripts/build-jaeger.sh >/dev/null
