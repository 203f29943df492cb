#!/usr/bin/env bash
# Runs golangci-lint (a pinned v2, configured by .golangci.yml) over the
# module. The binary is built once from the Go module proxy with the local
# Go toolchain and cached in a directory keyed by its version and the Go
# version (a linter built by an older Go cannot load newer code); a lock
# keeps two runs from building it at the same time.
#
# Usage: scripts/lint.sh            lint ./...
#        scripts/lint.sh PKG...     lint the given packages
#        scripts/lint.sh --install  build (if needed) and print the binary
set -euo pipefail

GOLANGCI_LINT_VERSION="${GOLANGCI_LINT_VERSION:-v2.15.0}"
GO="${GO:-go}"
cache_root="${PREVIEWD_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/previewd-tools}"
dir="$cache_root/golangci-lint-$GOLANGCI_LINT_VERSION-$(GOTOOLCHAIN=local "$GO" env GOVERSION)"
bin="$dir/golangci-lint"

if [ ! -x "$bin" ]; then
  mkdir -p "$cache_root"
  exec 9>"$cache_root/.lock"
  flock 9
  if [ ! -x "$bin" ]; then # another run may have built it while we waited
    echo "lint: building golangci-lint $GOLANGCI_LINT_VERSION (once)" >&2
    tmp="$(mktemp -d "$cache_root/.build.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    GOTOOLCHAIN=local GOFLAGS= GOBIN="$tmp" CGO_ENABLED=0 \
      "$GO" install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION"
    mkdir -p "$dir"
    mv "$tmp/golangci-lint" "$bin"
  fi
  exec 9>&-
fi

if [ "${1:-}" = "--install" ]; then
  echo "$bin"
  exit 0
fi

cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
  set -- ./...
fi
exec "$bin" run "$@"
