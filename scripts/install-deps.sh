#!/usr/bin/env bash
# Installs what the test suite drives for real: Prometheus (Debian), the CUDA toolkit (Debian
# non-free: the `cuda` feature's build check), the openai client,
# Locust, sentencepiece, gguf, tokenizers and tiktoken (PyPI: the GGUF tokenizer tests),
# llama.cpp's prebuilt CPU build (npm: node-llama-cpp), cargo-fuzz (crates.io), Helm's linter via helm-sdkpy (PyPI; it declares Python 3.12, hence
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
# The CUDA toolkit (nvcc), so the `cuda` feature is compiled in CI: no GPU is needed to build.
# Debian ships it in non-free (bookworm: CUDA 11.8), added here as its own source file.
if ! command -v nvcc >/dev/null; then
  if ! apt-cache show nvidia-cuda-toolkit >/dev/null 2>&1; then
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$codename" | $SUDO tee /etc/apt/sources.list.d/sluice-nonfree.sources >/dev/null
    $SUDO apt-get update -qq
  fi
  $SUDO apt-get install -y -qq --no-install-recommends nvidia-cuda-toolkit >/dev/null
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
# llama.cpp as the reference engine (crates/sluice-server/tests/llama_cpp.rs drives it through
# tests/node/llama_cpp.mjs): the prebuilt CPU build that node-llama-cpp ships on npm, so nothing
# is compiled. Only the linux-x64 CPU binary: the optional CUDA and Vulkan builds are 600 MB.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
NODE_LLAMA_CPP=3.22.1
if [ ! -f "/var/tmp/sluice-node/node_modules/@node-llama-cpp/linux-x64/package.json" ] ||
   ! grep -q "\"version\": \"$NODE_LLAMA_CPP\"" /var/tmp/sluice-node/node_modules/node-llama-cpp/package.json; then
  mkdir -p /var/tmp/sluice-node
  npm install -s --prefix /var/tmp/sluice-node --no-audit --no-fund --omit=optional --ignore-scripts \
    "node-llama-cpp@$NODE_LLAMA_CPP" "@node-llama-cpp/linux-x64@$NODE_LLAMA_CPP" >/dev/null
fi
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
