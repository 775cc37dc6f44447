#!/usr/bin/env bash
# Names every tool `make test` needs that this machine lacks, with how to get it; exit 2 if any.
# (The tiers would fail anyway, later and less clearly. The pod tier never skips.)
set -u
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1: $2"); }
py=${PYTHON:-python3}
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  missing+=("$py >= 3.11: the webhook's interpreter (apt-get install python3 python3-venv, or pyenv)")
fi
"$py" -c 'import venv, ensurepip' 2>/dev/null || missing+=("python venv: apt-get install python3-venv")
need go "Go >= 1.24 builds kube-apiserver and etcd and fetches the test CRDs (https://go.dev/dl)"
need kubectl "drives the end-to-end and pod tiers (any recent release)"
need podman "builds and runs the image for the pod tier (apt-get install podman)"
need runc "the OCI runtime the pod tier uses (apt-get install runc)"
need mmdebstrap "makes the pod tier's Debian base image (apt-get install mmdebstrap)"
if [ ${#missing[@]} -gt 0 ]; then
  echo "make test: missing prerequisites:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  echo "On Debian/Ubuntu as root: apt-get install podman runc mmdebstrap python3-venv (see README, Prerequisites)" >&2
  exit 2
fi
