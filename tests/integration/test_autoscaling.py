"""Autoscaling on the real backlog, end to end: real Redis Sentinel broker, real
Celery producer and workers on the local node, the real ReplicaSet controller
choosing which pods to delete (guided by pod-deletion-cost)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from loadkit import producer_app
from test_broker import create_broker, wait_phase
from test_pool import BROKER, broker_password, create_pool, pool_status
from waiting import wait_for

pytestmark = pytest.mark.integration
TASKS, SECONDS = 10, 4.0


def replicas(apps: client.AppsV1Api, ns: str) -> int:
    return int(apps.read_namespaced_deployment("auto", ns).spec.replicas)


def test_burst_scales_up_drains_and_returns_to_zero_without_killing_busy_workers(
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
        "auto",
        {
            "app": "taskapp:app",
            "acksLate": True,
            "timeLimitSeconds": 30,
            "autoscaling": {
                "minReplicas": 0,
                "maxReplicas": 4,
                "pollIntervalSeconds": 1,
                "idleSecondsBeforeZero": 5,
                "scaleDown": {"stabilizationSeconds": 3},
            },
        },
    )
    status = wait_phase(custom, namespace, "Ready", 180)
    wait_for(lambda: apps.list_namespaced_deployment(namespace).items, 60, 0.2, "Deployment")
    assert replicas(apps, namespace) == 0

    producer = producer_app(status["connection"], broker_password(core, namespace))
    published = time.monotonic()
    results = [producer.send_task("taskapp.sleep", (SECONDS, f"t{i}")) for i in range(TASKS)]
    wait_for(lambda: replicas(apps, namespace) == 4, 30, 0.05, "scale-up to 4")
    reaction = time.monotonic() - published

    seen_pods: set[str] = set()

    def track_pods() -> None:
        for p in core.list_namespaced_pod(namespace, label_selector="celeriac.io/pool=auto").items:
            seen_pods.add(p.metadata.name)

    def all_done() -> bool:
        track_pods()
        return all(r.ready() for r in results)

    wait_for(all_done, 180, 0.5, "every task done")
    assert sorted(r.get(timeout=10) for r in results) == sorted(f"done t{i}" for i in range(TASKS))

    def back_to_zero() -> bool:
        track_pods()
        return (
            replicas(apps, namespace) == 0
            and not core.list_namespaced_pod(
                namespace, label_selector="celeriac.io/pool=auto"
            ).items
        )

    wait_for(back_to_zero, 120, 0.5, "scale back to zero, every worker gone")

    # No worker was stopped while it ran a task: every start has its finish in the
    # same pod's log (a SIGKILL or a cold shutdown would leave one open).
    ran = 0
    for pod in seen_pods:
        log = local_node.log_text(namespace, pod, "worker")
        started = set(re.findall(r"task (t\d+) started", log))
        finished = set(re.findall(r"task (t\d+) finished", log))
        assert started == finished, (pod, started - finished)
        ran += len(started)
    assert ran == TASKS  # each ran exactly once

    st = pool_status(custom, namespace, "auto")
    assert st["desiredReplicas"] == 0
    assert "0" in st["lastScaleReason"] and st["lastScaleTime"]
    events = [
        e
        for e in core.list_namespaced_event(namespace).items
        if e.involved_object.name == "auto" and e.reason == "Scaled"
    ]
    assert len(events) >= 2, [e.message for e in events]
    print(
        f"backlog -> 4 replicas in {reaction:.2f}s; scaling events: "
        + "; ".join(e.message for e in events)
    )
