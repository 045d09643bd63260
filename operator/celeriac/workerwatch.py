"""The worker Deployments and pods of all pools, mirrored from watches (see
mirror.py): what a pool reconcile reads on every timer run, without a request."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from .mirror import Mirror
from .render.meta import POOL_LABEL

SELECTOR = f"app.kubernetes.io/component=worker,{POOL_LABEL}"


def _deployment(obj: dict[str, Any]) -> dict[str, Any]:
    """The fields pools.py reads of a Deployment (replicas and rollout state)."""
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    keep = ("replicas", "readyReplicas", "updatedReplicas", "observedGeneration")
    return {
        "metadata": {"name": meta["name"], "generation": meta.get("generation")},
        "spec": {"replicas": spec.get("replicas")},
        "status": {k: status[k] for k in keep if k in status},
    }


def _pod(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return (meta.get("labels") or {}).get(POOL_LABEL, ""), meta["name"]


class WorkerWatch:
    def __init__(self, api: client.ApiClient, namespaces: list[str] | tuple[str, ...] = ()):
        self.deployments = Mirror(api, "apps/v1", "Deployment", SELECTOR, _deployment, namespaces)
        self.pod_mirror = Mirror(api, "v1", "Pod", SELECTOR, _pod, namespaces)

    def start(self) -> None:
        self.deployments.start()
        self.pod_mirror.start()

    def stop(self) -> None:
        self.deployments.stop()
        self.pod_mirror.stop()

    @property
    def synced(self) -> bool:
        """Both listed and watched; until then (or after a watch broke) callers
        read the API instead."""
        return self.deployments.synced and self.pod_mirror.synced

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.deployments.get(namespace, name)
        return found

    def pods(self, namespace: str, pool: str) -> tuple[str, ...]:
        """The pool's worker pod names."""
        return tuple(sorted(n for p, n in self.pod_mirror.items(namespace) if p == pool))
