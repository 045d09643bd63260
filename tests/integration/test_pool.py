"""WorkerPools on the local control plane with the local node: real Celery and
PyWorkflow workers run exactly what the operator rendered (command, env, the
ConfigMap's files) and reach a real Sentinel broker."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import redis
from kubernetes import client
from loadkit import producer_app
from test_broker import broker_status, condition, create_broker, wait_phase
from waiting import wait_for

pytestmark = pytest.mark.integration
G, V = "celeriac.io", "v1alpha1"
WORKER_IMAGE = "celeriac.dev/worker:test"  # the local node runs the test venv for it
BROKER = {
    "mode": "sentinel",
    "redis": {"replicas": 1},
    "sentinel": {"downAfterMilliseconds": 2000, "failoverTimeout": 10000},
}


def create_pool(custom: client.CustomObjectsApi, ns: str, name: str, spec: dict[str, Any]) -> None:
    body = {
        "apiVersion": f"{G}/{V}",
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": {"brokerRef": {"name": "b"}, "image": WORKER_IMAGE, **spec},
    }
    custom.create_namespaced_custom_object(G, V, ns, "workerpools", body)


def pool_status(custom: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object(G, V, ns, "workerpools", name)
    return dict(obj.get("status") or {})


def wait_pool_ready(custom: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        st = pool_status(custom, ns, name)
        return st if condition(st, "Ready").get("status") == "True" else None

    try:
        return wait_for(ready, 180, 0.5, f"WorkerPool {name} Ready")
    except AssertionError as err:
        raise AssertionError(f"{err}; status: {pool_status(custom, ns, name)}") from None


def broker_password(core: client.CoreV1Api, ns: str) -> str:
    return base64.b64decode(core.read_namespaced_secret("b-auth", ns).data["password"]).decode()


def pod_logs(local_node: Any, core: client.CoreV1Api, ns: str, selector: str) -> str:
    pods = core.list_namespaced_pod(ns, label_selector=selector).items
    return "".join(local_node.log_text(ns, p.metadata.name, "worker") for p in pods)


def test_unmodified_celery_app_reaches_broker_through_sentinel(
    operator: Path,
    local_node: Any,
    custom: client.CustomObjectsApi,
    kube_api: client.ApiClient,
    namespace: str,
) -> None:
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    create_broker(custom, namespace, BROKER)
    create_pool(
        custom,
        namespace,
        "w",
        {
            "app": "wrongapp:app",
            "acksLate": True,
            "timeLimitSeconds": 60,
            "softTimeLimitSeconds": 50,
            "visibilityTimeoutSeconds": 600,
            "replicas": 2,
        },
    )
    status = wait_phase(custom, namespace, "Ready")
    pool = wait_pool_ready(custom, namespace, "w")
    assert (pool["replicas"], pool["readyReplicas"]) == (2, 2)
    assert pool["selector"] == "app.kubernetes.io/component=worker,celeriac.io/pool=w"

    password = broker_password(core, namespace)
    producer = producer_app(status["connection"], password)
    assert producer.send_task("wrongapp.add", (2, 3)).get(timeout=60) == 5
    seen = producer.send_task("wrongapp.settings").get(timeout=60)
    assert seen == {
        "master_name": f"{namespace}.b",
        "visibility_timeout": 600,
        "priority_steps": [0, 5, 9],  # the app's own transport options are kept
        "prefetch": 1,
        "acks_late": True,
        "time_limit": 60,
    }

    # Grace covers the hard limit plus a margin; nothing secret is rendered.
    deployment = apps.read_namespaced_deployment("w", namespace)
    assert deployment.spec.template.spec.termination_grace_period_seconds == 90
    assert password not in str(deployment.spec)
    for cm in core.list_namespaced_config_map(namespace).items:
        assert password not in str(cm.data), cm.metadata.name
    logs = pod_logs(local_node, core, namespace, "celeriac.io/pool=w")
    assert "wrongapp.add" in logs  # the logs are really the workers'
    assert password not in logs
    assert password not in operator.read_text()

    # Replicas alone do not restart workers; a setting that matters does.
    template_hash = deployment.spec.template.metadata.annotations["celeriac.io/config-hash"]
    patch = {"spec": {"replicas": 1}}
    custom.patch_namespaced_custom_object(G, V, namespace, "workerpools", "w", patch)
    wait_for(lambda: apps.read_namespaced_deployment("w", namespace).spec.replicas == 1, 30)
    annotations = apps.read_namespaced_deployment("w", namespace).spec.template.metadata.annotations
    assert annotations["celeriac.io/config-hash"] == template_hash
    patch = {"spec": {"prefetchMultiplier": 2}}
    custom.patch_namespaced_custom_object(G, V, namespace, "workerpools", "w", patch)
    wait_for(
        lambda: (
            apps.read_namespaced_deployment("w", namespace).spec.template.metadata.annotations[
                "celeriac.io/config-hash"
            ]
            != template_hash
        ),
        30,
        what="a new config hash",
    )
    wait_pool_ready(custom, namespace, "w")
    wait_for(
        lambda: producer.send_task("wrongapp.settings").get(timeout=60)["prefetch"] == 2,
        60,
        what="workers restarted with the new setting",
    )


def test_pool_reports_missing_broker(
    operator: Path, custom: client.CustomObjectsApi, kube_api: client.ApiClient, namespace: str
) -> None:
    create_pool(custom, namespace, "orphan", {"app": "wrongapp:app"})

    def blocked() -> bool:
        st = pool_status(custom, namespace, "orphan")
        return condition(st, "Ready").get("reason") == "BrokerNotFound"

    wait_for(blocked, 30, 0.2, "BrokerNotFound")
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    wait_for(
        lambda: any(
            e.reason == "BrokerNotFound" and e.involved_object.name == "orphan"
            for e in core.list_namespaced_event(namespace).items
        ),
        30,
        0.2,
        "a BrokerNotFound Event",
    )
    assert not apps.list_namespaced_deployment(namespace).items  # nothing to connect to


def test_pyworkflow_pool_connects_through_sentinel(
    operator: Path,
    local_node: Any,
    custom: client.CustomObjectsApi,
    kube_api: client.ApiClient,
    namespace: str,
) -> None:
    core = client.CoreV1Api(kube_api)
    create_broker(custom, namespace, BROKER)
    create_pool(custom, namespace, "flows", {"runtime": "pyworkflow", "app": "flowapp"})
    status = wait_phase(custom, namespace, "Ready")
    wait_pool_ready(custom, namespace, "flows")
    password = broker_password(core, namespace)
    # Its consumers are bound on the real master, found through Sentinel.
    master = status["master"]["pod"]
    host = f"{master}.b-redis-headless.{namespace}.svc.cluster.local"
    with redis.Redis(host=host, password=password, decode_responses=True) as r:
        bindings = r.keys("_kombu.binding.*")
    assert any("pyworkflow" in b for b in bindings), bindings
    logs = pod_logs(local_node, core, namespace, "celeriac.io/pool=flows")
    # PyWorkflow prints its broker URL: the one Sentinel Service, with no password.
    assert f"Broker: sentinel://b-sentinel.{namespace}.svc.cluster.local:26379/0" in logs
    assert password not in logs
    assert broker_status(custom, namespace)["phase"] == "Ready"
