"""Names, labels, owner references and pod placement shared by every render."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api.base import API_VERSION, PodSettings
from ..apply import MANAGED_BY, OWNER_LABEL

BROKER_LABEL = "celeriac.io/broker"
POOL_LABEL = "celeriac.io/pool"
ROLE_LABEL = "celeriac.io/role"
CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class Owner:
    """The custom resource that owns the rendered objects."""

    kind: str
    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def metadata(
    owner: Owner, name: str, labels: dict[str, str], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": {
            **labels,
            "app.kubernetes.io/part-of": "celeriac",
            MANAGED_BY: "celeriac",
            OWNER_LABEL: owner.uid,
        },
        "ownerReferences": [owner.reference()],
    }
    if annotations:
        meta["annotations"] = annotations
    return meta


def pod_placement(pod: PodSettings | None, selector: dict[str, str]) -> dict[str, Any]:
    """Pod spec fields from spec.pod; soft anti-affinity across nodes by default."""
    pod = pod or PodSettings()
    spec: dict[str, Any] = {
        "affinity": pod.affinity
        or {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": dict(selector)},
                        },
                    }
                ]
            }
        }
    }
    optional = {
        "tolerations": pod.tolerations,
        "nodeSelector": pod.node_selector,
        "topologySpreadConstraints": pod.topology_spread_constraints,
        "priorityClassName": pod.priority_class_name,
        "serviceAccountName": pod.service_account_name,
        "imagePullSecrets": [{"name": s.name} for s in pod.image_pull_secrets or []] or None,
    }
    spec.update({k: v for k, v in optional.items() if v})
    return spec


def pod_metadata(
    pod: PodSettings | None, labels: dict[str, str], annotations: dict[str, str]
) -> dict[str, Any]:
    pod = pod or PodSettings()
    return {
        "labels": {**(pod.labels or {}), **labels},
        "annotations": {**(pod.annotations or {}), **annotations},
    }


def disruption_budget(
    owner: Owner,
    name: str,
    labels: dict[str, str],
    selector: dict[str, str],
    pod: PodSettings | None,
) -> dict[str, Any] | None:
    budget = (pod or PodSettings()).disruption_budget
    if not budget.enabled:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(owner, name, labels),
        "spec": {"maxUnavailable": budget.max_unavailable, "selector": {"matchLabels": selector}},
    }
