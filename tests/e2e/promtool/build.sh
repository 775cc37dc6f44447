#!/usr/bin/env bash
# Builds promtool for the alert tests, or reuses an earlier build. Prints the binary's path on its
# last line of stdout.
#  - PROMTOOL_BIN pointing at an executable wins.
#  - Otherwise promtool is built from the Go module proxy with this directory's go.mod into
#    ${WAYPOINT_PROMTOOL_CACHE:-~/.cache/waypoint-webhook/promtool}/<version>/promtool.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../gobuild.sh"
prebuilt PROMTOOL_BIN
version=$(module_version "$here" github.com/prometheus/prometheus)
go_tool_build promtool "$here" "${WAYPOINT_PROMTOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/waypoint-webhook/promtool}" \
  "$version" promtool github.com/prometheus/prometheus/cmd/promtool \
  "-s -w -X github.com/prometheus/common/version.Version=$version"
