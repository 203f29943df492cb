#!/usr/bin/env bash
# Builds the Kubernetes control-plane binaries the kube tests run against
# (etcd, kube-apiserver, kube-controller-manager) from the published Go
# modules, in a throwaway module in a temp dir, and caches them in a
# directory keyed by the versions. A warm cache costs nothing; a cold build
# takes about 6 minutes on 2 cores and about 3 GB of Go build cache.
#
# previewd's own go.mod never requires k8s.io/kubernetes: that module pins
# its ~31 staging modules at v0.0.0, so the build module here maps each one
# to the matching v0.X.Y with a replace line taken from its own go.mod.
#
# Usage: scripts/k8s-testbed.sh        build if needed; print the directory
#        scripts/k8s-testbed.sh --dir  print the directory only
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.34.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.4}"
cache_root="${PREVIEWD_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/previewd-k8s}"
dir="$cache_root/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
bins=(etcd kube-apiserver kube-controller-manager)

if [ "${1:-}" = "--dir" ]; then
  echo "$dir"
  exit 0
fi

have_all() {
  for b in "${bins[@]}"; do [ -x "$dir/$b" ] || return 1; done
}
if have_all; then
  echo "$dir"
  exit 0
fi

mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9
if have_all; then # another run built them while we waited
  echo "$dir"
  exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/previewd-k8s-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
out="$work/bin"
mkdir -p "$out"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
start=$(date +%s)
log() { echo "k8s-testbed: $*" >&2; }

# etcd: a five-line main in its own module.
log "building etcd v$ETCD_VERSION"
mkdir -p "$work/etcd"
cat >"$work/etcd/go.mod" <<EOF
module previewdk8s/etcd

go 1.24

require go.etcd.io/etcd/server/v3 v$ETCD_VERSION
EOF
cat >"$work/etcd/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
(cd "$work/etcd" && go mod tidy >&2 && nice -n 10 go build -trimpath -ldflags "-s -w" -o "$out/etcd" .)

# kube-apiserver and kube-controller-manager from k8s.io/kubernetes.
log "building kube-apiserver and kube-controller-manager v$K8S_VERSION"
kmod="$(cd "$work" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
[ -f "$kmod" ] || { log "cannot find go.mod of k8s.io/kubernetes@v$K8S_VERSION"; exit 1; }
staging_version="v0.${K8S_VERSION#1.}"
mkdir -p "$work/k8s"
{
  echo "module previewdk8s/kube"
  echo
  echo "go 1.24"
  echo
  echo "require k8s.io/kubernetes v$K8S_VERSION"
  echo
  grep -E '=> \./staging/src/' "$kmod" | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
} >"$work/k8s/go.mod"
cat >"$work/k8s/tools.go" <<'EOF'
//go:build tools

package tools
EOF
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=${K8S_VERSION%%.*} -X $pkg.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
(
  cd "$work/k8s"
  go get "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION" "k8s.io/kubernetes/cmd/kube-controller-manager@v$K8S_VERSION" >&2
  for b in kube-apiserver kube-controller-manager; do
    log "building $b"
    nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$out/$b" "k8s.io/kubernetes/cmd/$b"
  done
)

mkdir -p "$(dirname "$dir")"
rm -rf "$dir.tmp"
mv "$out" "$dir.tmp"
rm -rf "$dir"
mv "$dir.tmp" "$dir"
log "built in $(($(date +%s) - start))s into $dir"
echo "$dir"
