#!/usr/bin/env bash
# Builds Jaeger all-in-one (the v2 binary, github.com/jaegertracing/jaeger/cmd/jaeger) from the Go
# module proxy, for the live tracing tests: sluice exports OTLP to it and the tests read the spans
# back through its query API. Run it with scripts/jaeger-allinone.yaml (loopback only, in-memory).
#
# The binary goes to a versioned directory outside the clone and is reused when present:
# $SLUICE_JAEGER_CACHE (default /var/tmp/sluice-jaeger)/jaeger-<version>/bin/jaeger. The build uses
# a throwaway module there (go mod init; go get -tool), so nothing in the repository changes.
# Prints the binary path on its last line. A cold build takes several minutes on 2 cores; a warm
# one returns at once.
set -euo pipefail

version="${JAEGER_VERSION:-v1.75.0}"
cache="${SLUICE_JAEGER_CACHE:-/var/tmp/sluice-jaeger}"
dir="$cache/jaeger-$version"
bin="$dir/bin/jaeger"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

mod="$dir/mod"
mkdir -p "$mod" "$dir/bin"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
cd "$mod"
if ! grep -q "github.com/jaegertracing/jaeger $version" go.mod 2>/dev/null; then
  rm -f go.mod go.sum
  go mod init sluice.local/jaeger-build >/dev/null 2>&1
  echo "downloading github.com/jaegertracing/jaeger@$version" >&2
  go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$version" 2>/dev/null
fi

echo "building jaeger $version" >&2
# Without the -X flags the binary reports version v0.0.0 (in its log and /api/... build info).
go build -mod=readonly -trimpath \
  -ldflags "-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=$version" \
  -o "$bin.tmp" github.com/jaegertracing/jaeger/cmd/jaeger
mv "$bin.tmp" "$bin"
echo "$bin"
