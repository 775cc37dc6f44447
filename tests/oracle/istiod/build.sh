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
source "$here/../../gobuild.sh"
prebuilt ISTIOD_BIN
version=$(module_version "$here" istio.io/istio)
go_tool_build istiod "$here" "${WAYPOINT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/waypoint-webhook}/istiod" "$version" \
  pilot-discovery istio.io/istio/pilot/cmd/pilot-discovery "-s -w"
