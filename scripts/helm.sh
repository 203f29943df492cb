#!/usr/bin/env bash
# Builds Helm from its published Go module and caches the binary in a
# directory keyed by the version (helm is not a Debian package). The chart
# tests run the real `helm lint --strict` and `helm template` with it. A
# warm cache costs nothing.
#
# Usage: scripts/helm.sh        build if needed; print the binary's path
#        scripts/helm.sh --path print the path only
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-3.22.0}"
cache_root="${PREVIEWD_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/previewd-tools}"
dir="$cache_root/helm-v$HELM_VERSION"
bin="$dir/helm"

if [ "${1:-}" = "--path" ]; then
  echo "$bin"
  exit 0
fi
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache_root"
exec 9>"$cache_root/.helm.lock"
flock 9
if [ -x "$bin" ]; then # another run built it while we waited
  echo "$bin"
  exit 0
fi

# Built beside the cache, so the mv below is a rename: a run that finds
# "$bin" never finds half of it.
tmp="$(mktemp -d "$cache_root/.build-helm.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "helm.sh: building helm v$HELM_VERSION" >&2
GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 GOBIN="$tmp" \
  go install "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION" >&2
mkdir -p "$dir"
mv "$tmp/helm" "$bin"
echo "$bin"
