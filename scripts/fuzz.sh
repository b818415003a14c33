#!/usr/bin/env bash
# Runs every cargo-fuzz (libFuzzer) target in fuzz/ for FUZZ_SECONDS each (default 60), seeded
# from the corpus in fuzz/corpus/<target>. New inputs go to a scratch corpus, so the repository's
# corpus changes only when someone copies findings back (docs/fuzzing.md). A crash, a panic or a
# failed assertion stops the run with the input saved under fuzz/artifacts/<target>/.
#
# FUZZ_SECONDS   seconds per target (default 60)
# FUZZ_TARGETS   space-separated targets to run (default: all)
# FUZZ_SANITIZER none (default: the targets are safe Rust; fastest) or address
# FUZZ_CORPUS    where the scratch corpora live (default: a temporary directory, removed after)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"
# Instrumented builds share nothing with the main build; keep their cache outside the clone.
export CARGO_TARGET_DIR="${SLUICE_FUZZ_TARGET_DIR:-/var/tmp/sluice-fuzz-target}"
# cargo-fuzz passes unstable rustc flags; the pinned stable toolchain accepts them this way, so
# fuzzing needs no second toolchain on an offline machine.
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || {
  echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
  exit 1
}
targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
scratch="${FUZZ_CORPUS:-}"
if [ -z "$scratch" ]; then
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
fi
flags=(--sanitizer "$sanitizer" --debug-assertions)
cargo fuzz build "${flags[@]}"
for t in $targets; do
  mkdir -p "$scratch/$t"
  printf '\n--- fuzz %s for %ss\n' "$t" "$secs"
  cargo fuzz run "${flags[@]}" "$t" "$scratch/$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1
done
echo "fuzzed $(echo $targets | wc -w) targets for ${secs}s each: no crashes"
