#!/usr/bin/env bash
# GPU readiness check, for a machine with an NVIDIA GPU, its driver (nvidia-smi) and a CUDA
# toolkit (nvcc). It:
#  1. builds sluice-server with `--features cuda` for this GPU's compute capability;
#  2. checks CPU against CUDA on the same weights (crates/sluice-server/tests/gpu.rs): the tiny
#     model in f32, q8_0, q4_0 and Q4_K_M, last-position logits within 2 % and greedy tokens
#     compared, and the device's memory count covering the loaded weights;
#  3. measures decode throughput at 1 and 16 streams on the TinyLlama-1.1B shape (q8_0, q4_0,
#     Q4_K_M), on CUDA and on this machine's CPU, in one run (the throughput bench);
#  4. serves that model on CUDA and compares the server's
#     llm_memory_usage_megabytes{memory_type="vram"} with nvidia-smi's used + reserved memory
#     (within 5 % of the GPU's memory).
# Prints a markdown report for docs/benchmarks.md on stdout; exits non-zero when a check fails.
#
# Usage: bash scripts/gpu-check.sh        (CUDA_COMPUTE_CAP=90 to override the detected one)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check.sh: no NVIDIA GPU here (nvidia-smi missing or failing)" >&2
  exit 2
fi
if ! command -v nvcc >/dev/null; then
  echo "gpu-check.sh: no nvcc: install a CUDA toolkit (Debian: nvidia-cuda-toolkit, non-free)" >&2
  exit 2
fi
gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader -i 0)
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader -i 0 | tr -d '. ')
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-$cap}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sluice-gpu-target}"
log=$(mktemp -d)
trap 'rm -rf "$log"; [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true' EXIT

echo "# GPU check: $gpu (compute capability $CUDA_COMPUTE_CAP), $(date -u +%Y-%m-%d)"
echo
echo "## 1. Build"
cargo build --release --locked -p sluice-server --features cuda --bin sluice-server >"$log/build" 2>&1 ||
  { tail -40 "$log/build" >&2; exit 1; }
echo "cargo build --release -p sluice-server --features cuda: ok"

echo
echo "## 2. CPU against CUDA"
echo '```'
cargo test --release --locked -p sluice-server --features cuda --test gpu -- --ignored --nocapture \
  --test-threads 1 2>&1 | grep -E "agree|device memory|test result|panicked|FAILED" || true
echo '```'
cargo test --release --locked -p sluice-server --features cuda --test gpu -- --ignored \
  --test-threads 1 >"$log/gpu-test" 2>&1 || { tail -40 "$log/gpu-test" >&2; exit 1; }

echo
echo "## 3. Decode throughput, CUDA then CPU (same run)"
for device in cuda cpu; do
  cargo bench --locked -p sluice-server --features cuda --bench throughput -- \
    --models tinyllama-q8_0,tinyllama-q4_0,tinyllama-q4k --streams 1,16 --modes on \
    --tokens 64 --device "$device" >"$log/bench-$device" 2>&1 ||
    { tail -20 "$log/bench-$device" >&2; exit 1; }
done
grep '^|' "$log/bench-cuda"
grep '^| tinyllama' "$log/bench-cpu"

echo
echo "## 4. VRAM accounting against nvidia-smi"
model="$CARGO_TARGET_DIR/bench-models/tinyllama-q4_0/model.gguf"
port=18431
"$CARGO_TARGET_DIR/release/sluice-server" --device cuda --model "$model" --host 127.0.0.1 \
  --port "$port" >"$log/server" 2>&1 &
server=$!
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { tail -20 "$log/server" >&2; exit 1; }
  sleep 1
done
curl -sf "http://127.0.0.1:$port/v1/completions" -H 'content-type: application/json' \
  -d '{"prompt": "The operator reads the queue and", "max_tokens": 32}' >/dev/null
ours=$(curl -sf "http://127.0.0.1:$port/metrics" |
  sed -n 's/^llm_memory_usage_megabytes{memory_type="vram"} //p')
read -r used reserved total < <(nvidia-smi --query-gpu=memory.used,memory.reserved,memory.total \
  --format=csv,noheader,nounits -i 0 | tr -d ',')
python3 - "$ours" "$used" "$reserved" "$total" <<'EOF'
import sys
ours, used, reserved, total = (float(x) for x in sys.argv[1:])
theirs = used + reserved
ok = abs(ours - theirs) <= 0.05 * total
print(f"server vram {ours:.0f} MiB; nvidia-smi used {used:.0f} + reserved {reserved:.0f} "
      f"= {theirs:.0f} MiB of {total:.0f} MiB: {'ok' if ok else 'MISMATCH'}")
sys.exit(0 if ok else 1)
EOF
