"""The operator never fights other field managers: what another tool sets on an
object the operator renders (a label, an annotation) survives idle reconciles and
re-applies alike, while a field the operator does own is put back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes import client
from waiting import wait_for

from celeriac.apply import FIELD_MANAGER
from helpers import Kubectl

pytestmark = pytest.mark.integration
G, V = "celeriac.io", "v1alpha1"
STS = "b-redis"


def timer_runs(log: Path) -> int:
    return log.read_text().count("Timer 'reconcile_broker' succeeded")


def owners(sts: client.V1StatefulSet, path: str) -> set[str]:
    """Field managers whose managed fields contain `path` (e.g. f:example.com/team)."""
    return {
        m.manager
        for m in sts.metadata.managed_fields or []
        if path in json.dumps(m.fields_v1 or {})
    }


def test_fields_of_other_managers_survive_reconciles(
    kubectl: Kubectl,
    kube_api: client.ApiClient,
    custom: client.CustomObjectsApi,
    namespace: str,
    plain_operator: Path,
) -> None:
    apps = client.AppsV1Api(kube_api)
    broker = {
        "apiVersion": f"{G}/{V}",
        "kind": "WorkflowBroker",
        "metadata": {"name": "b"},
        "spec": {"mode": "standalone"},
    }
    custom.create_namespaced_custom_object(G, V, namespace, "workflowbrokers", broker)
    wait_for(lambda: apps.list_namespaced_stateful_set(namespace).items, 60, 0.2, "StatefulSets")

    # A GitOps tool's server-side apply, and a person's kubectl annotate.
    partial = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": STS,
            "namespace": namespace,
            "labels": {"example.com/tier": "broker"},
            "annotations": {"example.com/team": "payments"},
        },
    }
    out = kubectl(
        "apply", "--server-side", "--field-manager=gitops", "-f", "-", input=json.dumps(partial)
    )
    assert out.returncode == 0, out.stderr
    out = kubectl("annotate", "-n", namespace, f"statefulset/{STS}", "example.com/note=kept")
    assert out.returncode == 0, out.stderr

    def foreign_fields_intact() -> None:
        sts = apps.read_namespaced_stateful_set(STS, namespace)
        assert sts.metadata.labels["example.com/tier"] == "broker"
        assert sts.metadata.annotations["example.com/team"] == "payments"
        assert sts.metadata.annotations["example.com/note"] == "kept"
        assert owners(sts, "f:example.com/team") == {"gitops"}
        assert FIELD_MANAGER not in owners(sts, "f:example.com/note")

    # Idle reconciles: the 5 s timer runs twice more.
    runs = timer_runs(plain_operator)
    wait_for(lambda: timer_runs(plain_operator) >= runs + 2, 30, 0.5, "two timer reconciles")
    foreign_fields_intact()

    # A change the operator must apply (force=true) still leaves them alone.
    resources = {"requests": {"cpu": "150m", "memory": "96Mi"}}
    custom.patch_namespaced_custom_object(
        G, V, namespace, "workflowbrokers", "b", {"spec": {"redis": {"resources": resources}}}
    )
    wait_for(
        lambda: (
            apps.read_namespaced_stateful_set(STS, namespace)
            .spec.template.spec.containers[0]
            .resources.requests
            == {"cpu": "150m", "memory": "96Mi"}
        ),
        30,
        0.2,
        "the operator's re-apply",
    )
    foreign_fields_intact()

    # Control: a field the operator owns is put back (so the reconciles above did run
    # and would have written, had they meant to).
    out = kubectl("scale", "-n", namespace, f"statefulset/{STS}", "--replicas=5")
    assert out.returncode == 0, out.stderr
    wait_for(
        lambda: apps.read_namespaced_stateful_set(STS, namespace).spec.replicas == 1,
        30,
        0.2,
        "replicas restored by the operator",
    )
    foreign_fields_intact()
