"""Planned failovers under a steady Celery publish load: deleting the master pod
(its preStop hook hands over) and a config rollout (replicas first, then a
handover, then the old master) lose no acknowledged task or result."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from loadkit import Load, MasterWatch, producer_app
from test_broker import broker_status, create_broker, wait_phase
from test_pool import BROKER, broker_password, create_pool, wait_pool_ready
from waiting import wait_for

# Repeated by bench/planned_failover.py (about 2 min a run), not run by every CI run.
pytestmark = [pytest.mark.integration, pytest.mark.bench]
G, V = "celeriac.io", "v1alpha1"


def rolled_out(apps: client.AppsV1Api, core: client.CoreV1Api, ns: str, sts: str) -> bool:
    s = apps.read_namespaced_stateful_set(sts, ns)
    pods = core.list_namespaced_pod(
        ns,
        label_selector=f"statefulset.kubernetes.io/pod-name in "
        f"({','.join(f'{sts}-{i}' for i in range(s.spec.replicas))})",
    )
    items = [p for p in pods.items if not p.metadata.deletion_timestamp]
    return len(items) == s.spec.replicas and all(
        p.metadata.labels.get("controller-revision-hash") == s.status.update_revision
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        for p in items
    )


def test_planned_failovers_lose_nothing(
    operator: Path,
    local_node: Any,
    custom: client.CustomObjectsApi,
    kube_api: client.ApiClient,
    namespace: str,
) -> None:
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    broker = {**BROKER, "redis": {"replicas": 2}}
    create_broker(custom, namespace, broker)
    # Late acks: a task executing at the handover loses its connection, is cancelled
    # and delivered again; it must still complete exactly with its result.
    pool = {"app": "wrongapp:app", "acksLate": True, "replicas": 2, "visibilityTimeoutSeconds": 60}
    create_pool(custom, namespace, "w", pool)
    status = wait_phase(custom, namespace, "Ready", 180)
    wait_pool_ready(custom, namespace, "w")
    password = broker_password(core, namespace)
    conn = status["connection"]
    sentinels = [(h.rsplit(":", 1)[0], 26379) for h in conn["sentinels"]]
    load = Load(producer_app(conn, password, results=False), producer_app(conn, password))
    watch = MasterWatch(sentinels, conn["masterName"], password)
    load.start()
    watch.start()
    t0 = time.monotonic()
    marks: dict[str, float] = {}
    try:
        time.sleep(3)
        # 1. `kubectl delete pod` of the master: preStop pauses writes, waits for a
        # replica to catch up and asks the Sentinels to fail over.
        old = status["master"]["pod"]
        marks["delete master"] = time.monotonic() - t0
        core.delete_namespaced_pod(old, namespace)
        wait_for(
            lambda: (
                broker_status(custom, namespace).get("master", {}).get("pod") not in (None, old)
            ),
            60,
            0.1,
            "a new master after deleting the old one",
        )
        wait_phase(custom, namespace, "Ready", 120)
        time.sleep(2)
        # 2. A config change: rolled by the operator with at most one failover.
        before = int(broker_status(custom, namespace).get("failovers", {}).get("count", 0))
        patch = {"spec": {"redis": {"replicas": 2, "maxmemory": "256Mi"}}}
        marks["rollout"] = time.monotonic() - t0
        custom.patch_namespaced_custom_object(G, V, namespace, "workflowbrokers", "b", patch)
        wait_for(
            lambda: (
                rolled_out(apps, core, namespace, "b-redis")
                and broker_status(custom, namespace).get("phase") == "Ready"
            ),
            240,
            0.5,
            "the redis rollout",
        )
        after = int(broker_status(custom, namespace).get("failovers", {}).get("count", 0))
        time.sleep(2)
    finally:
        load.stop()
        watch.stop()
    never, wrong = load.lost(timeout=90)
    logs = "".join(
        local_node.log_text(namespace, p.metadata.name, "worker")
        for p in core.list_namespaced_pod(namespace, label_selector="celeriac.io/pool=w").items
    )
    # The broker's promise: no acknowledged publish is lost in a planned failover,
    # so every task reached a worker.
    undelivered = [i for i in never if f"[{load.sent[i]}] received" not in logs]
    print(
        f"published {len(load.sent)} tasks; never completed {len(never)} "
        f"(delivered but cut off at the handover: {len(never) - len(undelivered)}); "
        f"longest publish pause {load.longest_gap:.2f}s; "
        f"longest time without a writable master {watch.longest_gap:.2f}s; "
        f"masters seen {watch.masters}; failovers in the rollout {after - before}; "
        f"publish errors {load.errors}; longest pause began at {load.gap_at - t0:.1f}s; {marks}"
    )
    if load.stall:
        print(f"a publish took over 10 s; the publisher stood at:\n{load.stall}")
    assert undelivered == [], "acknowledged publishes lost by the broker"
    assert wrong == []
    assert after - before <= 1
    assert len(load.sent) > 100
