#!/usr/bin/env bash
# A kind cluster running celeriac, for machines with Docker (not used by the tests,
# which run the control plane built from Go modules instead):
#   cluster from kind-config.yaml, the operator image built and loaded into it,
#   the chart installed, examples/ applied.
#
#   hack/kind-up.sh        # again to rebuild and upgrade; `kind delete cluster --name celeriac` to drop
#
# Needs docker, kind, kubectl and helm on PATH. Environment: KIND_CLUSTER (celeriac),
# IMAGE_REPOSITORY (celeriac/operator), IMAGE_TAG (dev), NAMESPACE (celeriac-system),
# DEMO_NAMESPACE (celeriac-demo).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="${KIND_CLUSTER:-celeriac}"
IMAGE_REPOSITORY="${IMAGE_REPOSITORY:-celeriac/operator}"
IMAGE_TAG="${IMAGE_TAG:-dev}"
NAMESPACE="${NAMESPACE:-celeriac-system}"
DEMO_NAMESPACE="${DEMO_NAMESPACE:-celeriac-demo}"
CONTEXT="kind-$CLUSTER"

log() { echo "[kind-up] $*" >&2; }
for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { log "$tool is required"; exit 1; }
done

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "cluster $CLUSTER exists"
else
  log "creating cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --config "$ROOT/kind-config.yaml" --wait 180s
fi

log "building $IMAGE_REPOSITORY:$IMAGE_TAG"
docker build -f "$ROOT/operator/Dockerfile" -t "$IMAGE_REPOSITORY:$IMAGE_TAG" "$ROOT"
kind load docker-image "$IMAGE_REPOSITORY:$IMAGE_TAG" --name "$CLUSTER"

log "installing the chart into $NAMESPACE"
upgrade=false
helm status celeriac --kube-context "$CONTEXT" -n "$NAMESPACE" >/dev/null 2>&1 && upgrade=true
# pullPolicy Never: the image exists only in the nodes, loaded above.
helm upgrade --install celeriac "$ROOT/charts/celeriac" \
  --kube-context "$CONTEXT" --namespace "$NAMESPACE" --create-namespace \
  --set image.repository="$IMAGE_REPOSITORY" --set image.tag="$IMAGE_TAG" \
  --set image.pullPolicy=Never --wait --timeout 5m
if $upgrade; then
  # The rebuilt image has the same tag: only new pods pick it up.
  kubectl --context "$CONTEXT" -n "$NAMESPACE" rollout restart deployment \
    -l app.kubernetes.io/instance=celeriac
  kubectl --context "$CONTEXT" -n "$NAMESPACE" rollout status deployment \
    -l app.kubernetes.io/instance=celeriac --timeout 180s
fi

log "applying examples/ into $DEMO_NAMESPACE"
kubectl --context "$CONTEXT" create namespace "$DEMO_NAMESPACE" --dry-run=client -o yaml \
  | kubectl --context "$CONTEXT" apply -f -
kubectl --context "$CONTEXT" -n "$DEMO_NAMESPACE" apply -f "$ROOT/examples/"
kubectl --context "$CONTEXT" -n "$DEMO_NAMESPACE" get wfb,wp
log "done. The example pools' worker images are placeholders: set spec.image and spec.app to your project's."
log "watch: kubectl --context $CONTEXT -n $DEMO_NAMESPACE get wfb,wp,pods -w"
