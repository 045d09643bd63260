#!/usr/bin/env bash
# Builds the client tools the tests need besides the control plane (kubectl comes
# from hack/build-control-plane.sh): helm, with `go install` from the Go module
# proxy into a cache outside the clone. Keyed by version, so a second run is a no-op.
#
#   hack/build-tools.sh          # prints the bin directory (holding `helm`) on stdout
#
# Environment: CELERIAC_CACHE (default ~/.cache/celeriac), HELM_VERSION.
set -euo pipefail

# The newest Helm whose go.mod accepts the local Go (v4.3 needs Go >= 1.26.0).
HELM_VERSION="${HELM_VERSION:-v4.3.1}"
CACHE="${CELERIAC_CACHE:-$HOME/.cache/celeriac}"
BIN="$CACHE/bin/helm-$HELM_VERSION"

export GOTOOLCHAIN=local CGO_ENABLED=0
log() { echo "build-tools: $*" >&2; }

if [ -x "$BIN/helm" ]; then echo "$BIN"; exit 0; fi
command -v go >/dev/null || { log "Go is required (https://go.dev/dl)"; exit 1; }

major="${HELM_VERSION%%.*}"   # v4.3.1 -> v4: the module path carries the major version
module="helm.sh/helm/$major"
[ "$major" = v3 ] || [ "$major" = v4 ] || { log "HELM_VERSION must be v3.x.y or v4.x.y"; exit 1; }

# go install writes into GOBIN; build into a scratch dir and move, so an
# interrupted build never leaves a half-written binary under the cache key.
mkdir -p "$CACHE/bin"
tmp="$(mktemp -d "$CACHE/bin/.helm-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# The same version stamps as Helm's Makefile, so `helm version` reports the release.
ld="-s -w -X $module/internal/version.version=$HELM_VERSION -X $module/internal/version.gitTreeState=clean"
log "building helm $HELM_VERSION (a few minutes on 2 cores)"
# GOFLAGS cleared: `go install module@version` refuses -mod and similar flags.
GOBIN="$tmp" GOFLAGS= go install -trimpath -ldflags "$ld" "$module/cmd/helm@$HELM_VERSION" >&2
mkdir -p "$BIN"
mv "$tmp/helm" "$BIN/helm"
echo "$BIN"
