"""The watch-fed mirror of worker Deployments and pods, against the real API
server: what is created, changed and deleted shows, in its scope and with the
worker labels only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from waiting import wait_for

from celeriac.render.meta import POOL_LABEL
from celeriac.workerwatch import WorkerWatch

pytestmark = pytest.mark.integration


def labels(pool: str | None) -> dict[str, str]:
    return {"app.kubernetes.io/component": "worker", POOL_LABEL: pool} if pool else {"a": "b"}


def deployment(name: str, pool: str | None, replicas: int) -> dict[str, Any]:
    match = {"app": name}
    return {
        "metadata": {"name": name, "labels": labels(pool)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": match},
            "template": {
                "metadata": {"labels": match},
                "spec": {"containers": [{"name": "w", "image": "example/worker:1"}]},
            },
        },
    }


def pod(name: str, pool: str | None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels(pool)},
        "spec": {"containers": [{"name": "w", "image": "example/worker:1"}]},
    }


@pytest.fixture
def other_namespace(kube_api: client.ApiClient, namespace: str) -> Iterator[str]:
    core = client.CoreV1Api(kube_api)
    name = f"{namespace}-other"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def test_mirror_follows_workers_in_scope(
    kube_api: client.ApiClient, namespace: str, other_namespace: str
) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment("before", "before", 1))
    watch = WorkerWatch(kube_api, [namespace])
    cluster = WorkerWatch(kube_api)
    watch.start()
    cluster.start()
    try:
        wait_for(lambda: watch.synced and cluster.synced, 20, 0.05, "both mirrors listed")
        # Listed: the Deployment that existed before the mirror started.
        before = watch.deployment(namespace, "before") or {}
        assert before["metadata"] == {"name": "before", "generation": 1}
        assert before["spec"] == {"replicas": 1}
        keys = {"replicas", "readyReplicas", "updatedReplicas", "observedGeneration"}
        assert set(before["status"]) <= keys
        # Watched: created, scaled, deleted.
        apps.create_namespaced_deployment(namespace, deployment("p", "p", 2))
        apps.create_namespaced_deployment(namespace, deployment("plain", None, 1))
        apps.create_namespaced_deployment(other_namespace, deployment("p", "p", 1))
        wait_for(lambda: watch.deployment(namespace, "p") is not None, 10, 0.05, "created")
        assert watch.deployment(namespace, "p")["spec"]["replicas"] == 2  # type: ignore[index]
        apps.patch_namespaced_deployment_scale("p", namespace, {"spec": {"replicas": 5}})
        wait_for(
            lambda: (watch.deployment(namespace, "p") or {})["spec"]["replicas"] == 5,
            10,
            0.05,
            "scaled",
        )
        for name in ("w-1", "w-0"):
            core.create_namespaced_pod(namespace, pod(name, "p"))
        core.create_namespaced_pod(namespace, pod("x", "q"))
        core.create_namespaced_pod(namespace, pod("unlabelled", None))
        wait_for(lambda: watch.pods(namespace, "p") == ("w-0", "w-1"), 10, 0.05, "pods")
        assert watch.pods(namespace, "q") == ("x",)
        apps.delete_namespaced_deployment("p", namespace)
        core.delete_namespaced_pod("w-1", namespace, grace_period_seconds=0)
        wait_for(lambda: watch.deployment(namespace, "p") is None, 10, 0.05, "deleted")
        wait_for(lambda: watch.pods(namespace, "p") == ("w-0",), 10, 0.05, "pod deleted")
        # The label selector and the scope are the API server's: neither the
        # unlabelled objects nor the other namespace's reach the namespaced mirror.
        assert watch.deployment(namespace, "plain") is None
        assert watch.deployment(other_namespace, "p") is None
        wait_for(lambda: cluster.deployment(other_namespace, "p") is not None, 10, 0.05, "all")
        assert cluster.deployment(namespace, "plain") is None
    finally:
        watch.stop()
        cluster.stop()
