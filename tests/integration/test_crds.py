"""The generated CRDs on a real API server: examples, defaults, kubectl views."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_examples_are_accepted(kubectl: Any, namespace: str, crds: Any) -> None:
    out = kubectl("apply", "--server-side", "-n", namespace, "-f", str(EXAMPLES))
    assert out.returncode == 0, out.stderr
    names = {line.split()[0] for line in out.stdout.splitlines()}
    assert {
        "workflowbroker.celeriac.io/dev-broker",
        "workflowbroker.celeriac.io/broker",
        "workflowbroker.celeriac.io/external",
        "workerpool.celeriac.io/default-workers",
        "workerpool.celeriac.io/report-workers",
        "workerpool.celeriac.io/workflows",
    } <= names


def test_get_shows_printer_columns(kubectl: Any, namespace: str, crds: Any) -> None:
    assert kubectl("apply", "-n", namespace, "-f", str(EXAMPLES)).returncode == 0
    out = kubectl("get", "wfb", "-n", namespace)
    assert out.stdout.split("\n")[0].split() == ["NAME", "MODE", "MASTER", "READY", "AGE"]
    assert "sentinel" in out.stdout
    out = kubectl("get", "wp", "-n", namespace)
    header = out.stdout.split("\n")[0].split()
    assert header == ["NAME", "BROKER", "REPLICAS", "READY", "DESIRED", "BACKLOG", "AGE"]
    both = kubectl("get", "celeriac", "-n", namespace, "-o", "name")
    assert len(both.stdout.split()) == 6, "the category groups both kinds"


def test_explain_shows_field_docs(kubectl: Any, crds: Any) -> None:
    out = kubectl("explain", "workerpool.spec.autoscaling")
    assert out.returncode == 0, out.stderr
    assert "Scale on the backlog" in out.stdout
    for field in ("minReplicas", "maxReplicas", "targetPerReplica", "pollIntervalSeconds"):
        assert field in out.stdout
    out = kubectl("explain", "wfb.spec.redis.maxmemoryPolicy")
    assert "noeviction" in out.stdout


def test_server_applies_defaults(custom: client.CustomObjectsApi, namespace: str) -> None:
    broker = {
        "apiVersion": "celeriac.io/v1alpha1",
        "kind": "WorkflowBroker",
        "metadata": {"name": "b"},
        "spec": {"mode": "sentinel", "sentinel": {}, "redis": {}},
    }
    got = custom.create_namespaced_custom_object(
        "celeriac.io", "v1alpha1", namespace, "workflowbrokers", broker
    )
    assert got["spec"]["sentinel"]["replicas"] == 3
    assert got["spec"]["redis"]["maxmemoryPolicy"] == "noeviction"
    pool = {
        "apiVersion": "celeriac.io/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": "p"},
        "spec": {"brokerRef": {"name": "b"}, "image": "w", "app": "proj:app"},
    }
    got = custom.create_namespaced_custom_object(
        "celeriac.io", "v1alpha1", namespace, "workerpools", pool
    )
    assert got["spec"]["queues"] == ["celery"]
    assert got["spec"]["prefetchMultiplier"] == 1


def test_scale_subresource(custom: client.CustomObjectsApi, kubectl: Any, namespace: str) -> None:
    pool = {
        "apiVersion": "celeriac.io/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": "p"},
        "spec": {"brokerRef": {"name": "b"}, "image": "w", "app": "proj:app", "replicas": 1},
    }
    custom.create_namespaced_custom_object(
        "celeriac.io", "v1alpha1", namespace, "workerpools", pool
    )
    out = kubectl("scale", "-n", namespace, "wp/p", "--replicas=3")
    assert out.returncode == 0, out.stderr
    got = custom.get_namespaced_custom_object(
        "celeriac.io", "v1alpha1", namespace, "workerpools", "p"
    )
    assert got["spec"]["replicas"] == 3
