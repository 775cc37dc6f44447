#!/usr/bin/env bash
# Builds istiod (pilot-discovery) for the differential tier, or reuses an earlier build.
#
# Prints the path of the binary on its last line of stdout.
#  - ISTIOD_BIN pointing at an executable wins.
#  - Otherwise it is built from the Go module proxy with this directory's go.mod (istio.io/istio is
#    served there only as pseudo-versions of master; the pinned one is of the 1.31 line) into
#    ${WAYPOINT_CACHE:-~/.cache/waypoint-webhook}/istiod/<version>/ and reused by later runs.
# About 4 minutes on 2 cores with the Go build cache warm from the control plane's build.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
version=$(sed -n 's/.*istio\.io\/istio \(v[^ ]*\).*/\1/p' "$here/go.mod" | head -n1)
[ -n "$version" ] || { echo "build.sh: cannot read the istio.io/istio version from go.mod" >&2; exit 2; }

if [ -n "${ISTIOD_BIN:-}" ] && [ -x "$ISTIOD_BIN" ]; then
  echo "$ISTIOD_BIN"
  exit 0
fi

cache=${WAYPOINT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/waypoint-webhook}/istiod
out="$cache/$version"
if [ -x "$out/pilot-discovery" ]; then
  echo "$out/pilot-discovery"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: go is needed to build istiod (or set ISTIOD_BIN)" >&2; exit 2; }
mkdir -p "$out"
tmp=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
cd "$here"
echo "build.sh: building istiod $version into $out (first time only)" >&2
nice -n 10 go build -trimpath -ldflags "-s -w" -o "$tmp/pilot-discovery" istio.io/istio/pilot/cmd/pilot-discovery >&2
mv "$tmp/pilot-discovery" "$out/"   # only a complete build is ever cached
echo "$out/pilot-discovery"
