#!/usr/bin/env bash
# Real Locust (PyPI) against a tiny-model sluice-server on a free loopback port, with the
# seed's flags and a shorter run time. Fails on any failed request or on no requests at all.
#
#   cargo build -p sluice-server && pip install locust && scripts/locust_smoke.sh
#
# Env: SLUICE_SERVER_BIN (default <target>/debug/sluice-server, CARGO_TARGET_DIR aware),
#      LOCUST_RUN_TIME (default 20s).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
server_bin=${SLUICE_SERVER_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/sluice-server}
run_time=${LOCUST_RUN_TIME:-20s}

if [[ ! -x "$server_bin" ]]; then
    echo "locust_smoke: sluice-server not found at $server_bin: run \`cargo build -p sluice-server\`" >&2
    exit 1
fi
if ! command -v locust >/dev/null; then
    echo "locust_smoke: locust not installed: run \`pip install locust\`" >&2
    exit 1
fi

work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$server_bin" --model builtin:tiny --host 127.0.0.1 --port "$port" >"$work/server.log" 2>&1 &
server_pid=$!
cleanup() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

python3 - "$port" "$server_pid" "$work/server.log" <<'PY'
import os, sys, time, urllib.request
port, pid, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
deadline = time.time() + 120
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("locust_smoke: sluice-server exited:\n" + open(log).read())
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2).status == 200:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
sys.exit("locust_smoke: sluice-server not ready after 120s:\n" + open(log).read())
PY

status=0
locust -f "$root/examples/locustfile.py" --host "http://127.0.0.1:$port" \
    --users 10 --spawn-rate 2 --run-time "$run_time" --headless \
    --csv "$work/locust" --exit-code-on-error 1 || status=$?

python3 - "$work/locust_stats.csv" "$work/locust_failures.csv" <<'PY' || status=1
import csv, sys
stats, failures = sys.argv[1], sys.argv[2]
rows = {r["Name"]: r for r in csv.DictReader(open(stats))}
agg = rows.get("Aggregated")
if agg is None:
    sys.exit("locust_smoke: no Aggregated row in " + stats)
requests, failed = int(agg["Request Count"]), int(agg["Failure Count"])
for name in ("/generate", "/generate/stream", "TTFT /generate/stream"):
    if int(rows.get(name, {}).get("Request Count", 0)) == 0:
        sys.exit(f"locust_smoke: no {name} requests recorded")
print(f"locust_smoke: {requests} requests, {failed} failed; "
      f"TTFT p50 {rows['TTFT /generate/stream']['50%']} ms, p95 {rows['TTFT /generate/stream']['95%']} ms")
for f in csv.DictReader(open(failures)):
    print(f"locust_smoke: failure {f['Method']} {f['Name']}: {f['Error']} x{f['Occurrences']}")
if failed:
    sys.exit(1)
PY

if [[ $status -ne 0 ]]; then
    echo "locust_smoke: FAILED (status $status)" >&2
fi
exit "$status"
