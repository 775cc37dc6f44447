#!/usr/bin/env bash
# Builds kube-apiserver and etcd for the end-to-end tier, or reuses earlier builds.
#
# Prints the directory that holds both binaries on its last line of stdout.
#   build.sh           the current Kubernetes (this directory's go.mod)
#   build.sh oldest    the oldest Kubernetes the README's compatibility table claims (oldest/go.mod):
#                      its kube-apiserver, beside the current build's etcd
#  - KUBEBUILDER_ASSETS pointing at a directory with kube-apiserver and etcd wins (envtest's convention;
#    for the current build only: the oldest one reads KUBEBUILDER_ASSETS_OLDEST).
#  - Otherwise binaries are built from the Go module proxy with this directory's go.mod into
#    ${WAYPOINT_CP_CACHE:-~/.cache/waypoint-webhook/controlplane}/<version>/ and reused by later runs.
# A cold build takes several minutes on 2 cores; a warm one is instant.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
flavour=${1:-current}
if [ "$flavour" = oldest ]; then
  if [ -n "${KUBEBUILDER_ASSETS_OLDEST:-}" ]; then echo "$KUBEBUILDER_ASSETS_OLDEST"; exit 0; fi
  etcd_dir=$("$here/build.sh" | tail -n1)
  here="$here/oldest"
fi
version=$(sed -n 's/^[[:space:]]*k8s.io\/kubernetes v\(1\.[0-9]*\.[0-9]*\).*/\1/p' "$here/go.mod" | head -n1)
[ -n "$version" ] || { echo "build.sh: cannot read the k8s.io/kubernetes version from go.mod" >&2; exit 2; }

if [ "$flavour" = current ] && [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

cache=${WAYPOINT_CP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/waypoint-webhook/controlplane}
out="$cache/v$version"
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: go is needed to build the control plane (or set KUBEBUILDER_ASSETS)" >&2; exit 2; }
mkdir -p "$out"
tmp=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
major=${version%%.*}
minor=${version#*.}; minor=${minor%%.*}
ld="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld="$ld -X $p.gitVersion=v$version -X $p.gitMajor=$major -X $p.gitMinor=$minor"
  ld="$ld -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

cd "$here"
echo "build.sh: building etcd and kube-apiserver v$version into $out (first time only)" >&2
if [ "$flavour" = oldest ]; then
  cp "$etcd_dir/etcd" "$tmp/etcd"  # etcd 3.6 serves every supported kube-apiserver
else
  go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3 >&2
fi
go build -trimpath -ldflags "$ld" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
# Move into place only when both built, so a killed build never leaves a half cache.
mv "$tmp/etcd" "$tmp/kube-apiserver" "$out/"
echo "$out"
