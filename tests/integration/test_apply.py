"""Server-side apply against the real API server: no-op reconciles, foreign fields
survive, pruning removes only what we made."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from celeriac.apply import MANAGED_BY, OWNER_LABEL, Applier

pytestmark = pytest.mark.integration


def config_map(ns: str, name: str, data: dict[str, str], owner: str = "u1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {MANAGED_BY: "celeriac", OWNER_LABEL: owner},
        },
        "data": data,
    }


def test_apply_is_idempotent_and_keeps_foreign_fields(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    applier = Applier(kube_api)
    desired = config_map(namespace, "cm", {"a": "1"})
    assert applier.apply(desired) == "created"
    version = core.read_namespaced_config_map("cm", namespace).metadata.resource_version
    assert applier.apply(desired) == "unchanged"
    assert core.read_namespaced_config_map("cm", namespace).metadata.resource_version == version

    # Another manager adds a label and a key; our next apply keeps both.
    core.patch_namespaced_config_map(
        "cm", namespace, {"metadata": {"labels": {"team": "x"}}, "data": {"theirs": "y"}}
    )
    assert applier.apply(config_map(namespace, "cm", {"a": "2"})) == "updated"
    live = core.read_namespaced_config_map("cm", namespace)
    assert live.data == {"a": "2", "theirs": "y"}
    assert live.metadata.labels["team"] == "x"
    managers = {m.manager for m in live.metadata.managed_fields}
    assert "celeriac" in managers


def test_prune_removes_only_undesired_objects_of_the_owner(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    applier = Applier(kube_api)
    for name, owner in (("keep", "u1"), ("drop", "u1"), ("other", "u2")):
        applier.apply(config_map(namespace, name, {}, owner))
    removed = applier.prune(namespace, "u1", [("v1", "ConfigMap")], {("ConfigMap", "keep")})
    assert removed == [("ConfigMap", "drop")]
    names = {c.metadata.name for c in core.list_namespaced_config_map(namespace).items}
    assert {"keep", "other"} <= names
    assert "drop" not in names
