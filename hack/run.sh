#!/usr/bin/env bash
# Runs the operator against the cluster in KUBECONFIG; with no reachable cluster it
# builds (once, cached) and starts a local control plane and runs there.
# Extra arguments go to `celeriac run` (e.g. -n my-namespace, --install-crds).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_debs
ensure_venv
exec celeriac run "$@"
