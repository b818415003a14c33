#!/usr/bin/env bash
# Sluice against llama.cpp, side by side in one run on the same GGUF files (TinyLlama-1.1B's
# shape, random weights, written by `export-tiny`: q4_0, q8_0 and llama.cpp's Q4_K_M mix).
# llama.cpp is the prebuilt CPU build of node-llama-cpp (scripts/install-deps.sh), every stream
# a sequence of one context, so concurrent streams share its batched decode.
#
# Measured for each file and engine, with the same prompt, greedy, no EOS stop:
#   - single-stream decode: generated tokens/s of one stream of $TOKENS tokens;
#   - 16 streams: aggregate generated tokens/s, and the slowest stream's time to first token;
#   - prefill: one $PREFILL-token prompt, prompt tokens/s;
#   - the memory-bandwidth ceiling for single-stream decode: the machine's read bandwidth
#     (numpy, one thread per core summing its part of a 2 GiB array, best of 5) over the bytes
#     a decode step reads (the weights in the file), and each engine's share of it.
# Prints a markdown table for docs/benchmarks.md. Takes 10-20 minutes on 2 cores.
#
# Usage: bash scripts/bench-vs-llama-cpp.sh   (TOKENS=64 PREFILL=256 to change the workload)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sluice-ci-target}"
export SLUICE_NODE_MODULES="${SLUICE_NODE_MODULES:-/var/tmp/sluice-node/node_modules}"
TOKENS="${TOKENS:-64}"
PREFILL="${PREFILL:-256}"
THREADS="$(nproc)"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
models="tinyllama-q4_0,tinyllama-q8_0,tinyllama-q4k"

echo "sluice (generates the files on first use) ..." >&2
cargo bench --locked -q -p sluice-server --bench throughput -- --models "$models" \
  --streams 1,16 --modes on --tokens "$TOKENS" --prefill-tokens "$PREFILL" --json \
  >"$out/sluice.jsonl"

for m in ${models//,/ }; do
  echo "llama.cpp on $m ..." >&2
  printf '{"model": "%s", "prompt": "The operator reads the queue and", "streams": [1, 16], "tokens": %s, "prefill_tokens": %s, "threads": %s}' \
    "$CARGO_TARGET_DIR/bench-models/$m/model.gguf" "$TOKENS" "$PREFILL" "$THREADS" |
    node scripts/llama_cpp_bench.mjs | sed "s/^{/{\"model\": \"$m\", /" >>"$out/llama.jsonl"
done

echo "memory bandwidth ..." >&2
python3 - "$out" "$CARGO_TARGET_DIR/bench-models" <<'EOF'
import json, os, sys, time
import numpy as np

out, models_dir = sys.argv[1], sys.argv[2]
from concurrent.futures import ThreadPoolExecutor

# Read bandwidth with every core reading (numpy releases the GIL while it sums): each thread
# sums its own slice of a 2 GiB array, too large for any cache.
threads = os.cpu_count()
a = np.ones(2 << 30 >> 3, dtype=np.float64)
parts = np.array_split(a, threads)
times = []
with ThreadPoolExecutor(threads) as pool:
    for _ in range(5):
        started = time.perf_counter()
        list(pool.map(np.sum, parts))
        times.append(time.perf_counter() - started)
bandwidth = a.nbytes / min(times)

def load(path):
    rows = [json.loads(l) for l in open(path)]
    by = {}
    for r in rows:
        m = by.setdefault(r["model"], {})
        if "prefill_tokens" in r:
            m["prefill"] = r["prefill_tokens"] / r["seconds"]
        else:
            m[r["streams"]] = (r["tokens_per_second"], max(r["ttft_seconds"]))
    return by

ours, theirs = load(os.path.join(out, "sluice.jsonl")), load(os.path.join(out, "llama.jsonl"))
print(f"Read bandwidth {bandwidth / 1e9:.1f} GB/s (numpy, {threads} threads summing a 2 GiB array, best of 5).")
print()
print("| file | engine | 1 stream tok/s | share of bandwidth ceiling | 16 streams tok/s | slowest TTFT at 16 (s) | prefill tok/s |")
print("|---|---|---:|---:|---:|---:|---:|")
for model in ours:
    size = os.path.getsize(os.path.join(models_dir, model, "model.gguf"))
    ceiling = bandwidth / size
    for name, r in (("sluice", ours[model]), ("llama.cpp", theirs.get(model, {}))):
        if 1 not in r:
            continue
        print(f"| {model} ({size / 2**20:.0f} MiB) | {name} | {r[1][0]:.1f} | {r[1][0] / ceiling:.0%} "
              f"| {r[16][0]:.1f} | {r[16][1]:.2f} | {r['prefill']:.1f} |")
    o, t = ours[model], theirs.get(model)
    if t and 1 in t:
        print(f"| {model} | sluice ÷ llama.cpp | {o[1][0] / t[1][0]:.2f}x | | {o[16][0] / t[16][0]:.2f}x "
              f"| {o[16][1] / t[16][1]:.2f}x (lower is better) | {o['prefill'] / t['prefill']:.2f}x |")
EOF
