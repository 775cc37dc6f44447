#!/usr/bin/env bash
# Builds helm for the chart tests, or reuses an earlier build. Prints the binary's path on its last
# line of stdout.
#  - HELM_BIN pointing at an executable wins.
#  - Otherwise helm is built from the Go module proxy with this directory's go.mod into
#    ${WAYPOINT_HELM_CACHE:-~/.cache/waypoint-webhook/helm}/<version>/helm and reused by later runs.
# A cold build takes about two minutes on 2 cores; a warm one is instant.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../gobuild.sh"
prebuilt HELM_BIN
version=$(module_version "$here" helm.sh/helm/v3)
go_tool_build helm "$here" "${WAYPOINT_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/waypoint-webhook/helm}" "$version" \
  helm helm.sh/helm/v3/cmd/helm "-s -w -X helm.sh/helm/v3/internal/version.version=$version"
