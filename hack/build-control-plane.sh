#!/usr/bin/env bash
# Builds a real Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl) and etcd from Go modules into a cache outside the clone.
# Binaries are keyed by version, so a second run is a no-op.
#
#   hack/build-control-plane.sh          # prints the bin directory on stdout
#
# Environment: CELERIAC_CACHE (default ~/.cache/celeriac), KUBE_VERSION, ETCD_VERSION.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.1}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE="${CELERIAC_CACHE:-$HOME/.cache/celeriac}"
BIN="$CACHE/bin/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION"
KUBE_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
log() { echo "build-control-plane: $*" >&2; }

complete() {
  for b in "${KUBE_CMDS[@]}" etcd; do [ -x "$BIN/$b" ] || return 1; done
}

if complete; then echo "$BIN"; exit 0; fi
command -v go >/dev/null || { log "Go is required (https://go.dev/dl)"; exit 1; }
mkdir -p "$BIN"
work="$CACHE/build"
mkdir -p "$work"

build_kube() {
  local dir="$work/kube-$KUBE_VERSION"
  mkdir -p "$dir"
  # k8s.io/kubernetes pins its staging modules to v0.0.0 with local replaces;
  # a consumer must replace each with the matching published v0.X.Y.
  local modfile staging
  modfile=$(GOFLAGS= go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  staging=$(sed -n 's#^\s*\(k8s.io/[A-Za-z0-9./-]*\) => \./staging/.*#\1#p' "$modfile")
  local minor="${KUBE_VERSION#v1.}"
  {
    echo "module celeriac.local/kube"
    echo "go $(sed -n 's/^go //p' "$modfile")"
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo "replace ("
    for m in $staging; do echo "  $m => $m v0.$minor"; done
    echo ")"
  } > "$dir/go.mod"
  cat > "$dir/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubectl/pkg/cmd"
)
GO
  local major=1 kminor="${minor%%.*}"
  local ld="-s -w"
  for v in gitVersion=$KUBE_VERSION gitMajor=$major gitMinor=$kminor gitTreeState=clean; do
    ld="$ld -X k8s.io/component-base/version.$v -X k8s.io/client-go/pkg/version.$v"
  done
  (
    cd "$dir"
    log "resolving k8s.io/kubernetes $KUBE_VERSION modules"
    go mod tidy -e >/dev/null 2>&1 || true
    go get "k8s.io/kubernetes@$KUBE_VERSION" >&2
    for c in "${KUBE_CMDS[@]}"; do
      [ -x "$BIN/$c" ] && continue
      log "building $c (several minutes on 2 cores)"
      go build -trimpath -ldflags "$ld" -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c" >&2
      mv "$BIN/$c.tmp" "$BIN/$c"
    done
  )
}

build_etcd() {
  [ -x "$BIN/etcd" ] && return 0
  local dir="$work/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  cat > "$dir/go.mod" <<MOD
module celeriac.local/etcd
go 1.24
require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  cat > "$dir/main.go" <<'GO'
// etcd built from its server module: the same entry point as the etcd binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (
    cd "$dir"
    log "building etcd $ETCD_VERSION"
    go mod tidy >&2
    go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" . >&2
    mv "$BIN/etcd.tmp" "$BIN/etcd"
  )
}

build_etcd
build_kube
complete || { log "build incomplete in $BIN"; exit 1; }
echo "$BIN"
