#!/usr/bin/env bash
# Runs the official openai Python client against a tiny-model sluice-server on loopback.
# Needs: `pip install openai`, and a built server (cargo build -p sluice-server).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
bin="$target/debug/sluice-server"
[ -x "$bin" ] || { echo "missing $bin: run cargo build -p sluice-server" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
key="smoke-$RANDOM"
"$bin" --model builtin:tiny --host 127.0.0.1 --port "$port" --api-key "$key" >/tmp/sluice-openai-smoke.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break
  kill -0 $pid 2>/dev/null || { cat /tmp/sluice-openai-smoke.log; exit 1; }
  sleep 0.1
done
SLUICE_URL="http://127.0.0.1:$port" SLUICE_API_KEY="$key" python3 tests/python/test_openai_client.py
