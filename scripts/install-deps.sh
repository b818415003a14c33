#!/usr/bin/env bash
# Installs what the test suite drives for real: Prometheus (Debian), the openai client and
# Locust (PyPI), Helm's linter via helm-sdkpy (PyPI; it declares Python 3.12, hence
# --ignore-requires-python) and lupa for the Argo CD Lua health-check tests.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v prometheus >/dev/null || ! command -v curl >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends prometheus curl ca-certificates >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check openai locust lupa
python3 -m pip install -q --disable-pip-version-check --ignore-requires-python helm-sdkpy
