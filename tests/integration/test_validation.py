"""Invalid resources are rejected by the real API server (schema and CEL rules)
with a message that names the offending field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.integration

G, V = "celeriac.io", "v1alpha1"
PLURAL = {"WorkflowBroker": "workflowbrokers", "WorkerPool": "workerpools"}
SENTINEL = {"mode": "sentinel", "redis": {"replicas": 2}, "sentinel": {"replicas": 3}}
POOL = {"brokerRef": {"name": "b"}, "image": "worker:1", "app": "proj.celery:app"}


def merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `change` into a copy of `base`; a None value deletes the key."""
    out = copy.deepcopy(base)
    for key, value in change.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def broker(**change: Any) -> tuple[str, dict[str, Any]]:
    return "WorkflowBroker", merge(SENTINEL, change)


def standalone(**change: Any) -> tuple[str, dict[str, Any]]:
    return "WorkflowBroker", merge({"mode": "standalone"}, change)


def external(**change: Any) -> tuple[str, dict[str, Any]]:
    base = {"mode": "external", "external": {"url": "redis://redis.example:6379"}}
    return "WorkflowBroker", merge(base, change)


def pool(**change: Any) -> tuple[str, dict[str, Any]]:
    return "WorkerPool", merge(POOL, change)


# (id, (kind, spec), substrings the API server's message must contain)
CASES: list[tuple[str, tuple[str, dict[str, Any]], list[str]]] = [
    ("bad-mode", broker(mode="cluster"), ["spec.mode", "Unsupported value"]),
    ("replicas-type", broker(redis={"replicas": "two"}), ["spec.redis.replicas", "integer"]),
    ("replicas-max", broker(redis={"replicas": 9}), ["spec.redis.replicas", "less than or equal"]),
    ("sentinels-even", broker(sentinel={"replicas": 4}), ["spec.sentinel.replicas must be odd"]),
    ("sentinels-few", broker(sentinel={"replicas": 1}), ["spec.sentinel.replicas", "greater"]),
    ("quorum-min", broker(sentinel={"quorum": 1}), ["spec.sentinel.quorum", "greater"]),
    (
        "quorum-over",
        broker(sentinel={"quorum": 5}),
        ["spec.sentinel.quorum must be a majority"],
    ),
    (
        "quorum-minority",
        broker(sentinel={"replicas": 5, "quorum": 2}),
        ["spec.sentinel.quorum must be a majority"],
    ),
    (
        "master-name",
        broker(sentinel={"masterName": "my master"}),
        ["spec.sentinel.masterName", "should match"],
    ),
    (
        "eviction",
        broker(redis={"maxmemoryPolicy": "allkeys-lru"}),
        ["spec.redis.maxmemoryPolicy", "allowEviction"],
    ),
    (
        "policy-enum",
        broker(redis={"maxmemoryPolicy": "random"}),
        ["spec.redis.maxmemoryPolicy", "Unsupported value"],
    ),
    ("maxmemory", broker(redis={"maxmemory": "lots"}), ["spec.redis.maxmemory"]),
    (
        "persistence",
        broker(redis={"persistence": {"type": "disk"}}),
        ["spec.redis.persistence.type", "Unsupported value"],
    ),
    (
        "min-replicas-to-write",
        broker(redis={"replicas": 1, "minReplicasToWrite": 2}),
        ["spec.redis.minReplicasToWrite must not exceed spec.redis.replicas"],
    ),
    (
        "config-managed",
        broker(redis={"config": {"requirepass": "x", "hz": "20"}}),
        ["spec.redis.config must not set directives the operator manages"],
    ),
    (
        "config-name",
        broker(redis={"config": {"Bad Key": "1"}}),
        ["spec.redis.config: directive names are lower-case"],
    ),
    (
        "config-newline",
        broker(redis={"config": {"hz": "10\nrequirepass x"}}),
        ["spec.redis.config.hz", "should match"],
    ),
    ("tls-secret", broker(tls={"enabled": True}), ["spec.tls.secretName is required"]),
    ("database", broker(databases={"broker": 16}), ["spec.databases.broker"]),
    ("unknown-field", broker(redis={"replica": 2}), ['unknown field "spec.redis.replica"']),
    ("sentinel-standalone", standalone(sentinel={}), ["spec.sentinel is only allowed"]),
    (
        "replicas-standalone",
        standalone(redis={"replicas": 1}),
        ["spec.redis.replicas is only allowed when spec.mode is sentinel"],
    ),
    ("external-missing", external(external=None), ["spec.external is required"]),
    (
        "external-in-standalone",
        standalone(external={"url": "redis://x:6379"}),
        ["spec.external is only allowed"],
    ),
    ("external-with-pods", external(redis={}), ["spec.redis, spec.sentinel and spec.pod"]),
    (
        "external-both",
        external(external={"sentinels": ["s:26379"], "masterName": "m"}),
        ["spec.external needs exactly one of url or sentinels"],
    ),
    (
        "external-master-name",
        external(external={"url": None, "sentinels": ["s:26379"]}),
        ["spec.external.masterName is required"],
    ),
    (
        "external-password",
        external(external={"url": "redis://:hunter2@redis:6379"}),
        ["spec.external.url must not contain a password"],
    ),
    (
        "external-address",
        external(external={"url": None, "sentinels": ["no-port"], "masterName": "m"}),
        ["spec.external.sentinels[0]"],
    ),
    ("pool-broker", pool(brokerRef=None), ["spec.brokerRef", "Required"]),
    ("pool-image", pool(image=None), ["spec.image", "Required"]),
    ("pool-app", pool(app=None), ["spec.app is required for the celery runtime"]),
    ("pool-app-pattern", pool(app="not a module!"), ["spec.app", "should match"]),
    ("pool-concurrency", pool(concurrency=0), ["spec.concurrency", "greater"]),
    ("pool-enum", pool(pool="multiprocessing"), ["spec.pool", "Unsupported value"]),
    ("pool-runtime", pool(runtime="rq"), ["spec.runtime", "Unsupported value"]),
    ("pool-queues-empty", pool(queues=[]), ["spec.queues", "at least 1"]),
    ("pool-queues-dup", pool(queues=["a", "a"]), ["spec.queues[1]", "Duplicate"]),
    ("pool-replicas", pool(replicas=-1), ["spec.replicas", "greater"]),
    (
        "pool-min-max",
        pool(autoscaling={"minReplicas": 5, "maxReplicas": 2}),
        ["spec.autoscaling.minReplicas must not exceed spec.autoscaling.maxReplicas"],
    ),
    (
        "pool-time-limits",
        pool(softTimeLimitSeconds=300, timeLimitSeconds=300),
        ["spec.softTimeLimitSeconds must be less than spec.timeLimitSeconds"],
    ),
    (
        "pool-result-backend",
        pool(resultBackend={"type": "none", "brokerRef": {"name": "b"}}),
        ["spec.resultBackend.brokerRef is only allowed"],
    ),
    (
        "pool-quantity",
        pool(resources={"limits": {"cpu": "two cores"}}),
        ["spec.resources.limits.cpu"],
    ),
    ("pool-unknown", pool(workers=3), ['unknown field "spec.workers"']),
    ("pool-poll", pool(autoscaling={"pollIntervalSeconds": 0}), ["pollIntervalSeconds"]),
]


def body(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{G}/{V}", "kind": kind, "metadata": {"name": name}, "spec": spec}


def rejection(call: Any) -> str:
    with pytest.raises(ApiException) as err:
        call()
    assert err.value.status in (400, 422), err.value.body
    return str(json.loads(err.value.body)["message"])


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize(("case", "resource", "expected"), CASES, ids=[c[0] for c in CASES])
def test_invalid_resource_is_rejected(
    custom: client.CustomObjectsApi,
    namespace: str,
    case: str,
    resource: tuple[str, dict[str, Any]],
    expected: list[str],
) -> None:
    kind, spec = resource
    message = rejection(
        lambda: custom.create_namespaced_custom_object(
            G, V, namespace, PLURAL[kind], body(kind, case, spec), field_validation="Strict"
        )
    )
    for text in expected:
        assert text in message, message


@pytest.mark.parametrize(
    "resource",
    [broker(), standalone(), external(), pool(), pool(runtime="pyworkflow", app=None)],
    ids=["sentinel", "standalone", "external", "celery-pool", "pyworkflow-pool"],
)
def test_valid_baselines_are_accepted(
    custom: client.CustomObjectsApi, namespace: str, resource: tuple[str, dict[str, Any]]
) -> None:
    """Each invalid case differs from one of these, so the rejection is the change's."""
    kind, spec = resource
    custom.create_namespaced_custom_object(
        G, V, namespace, PLURAL[kind], body(kind, "ok", spec), field_validation="Strict"
    )


IMMUTABLE = [
    (
        "mode",
        broker(),
        {"spec": {"mode": "standalone", "sentinel": None, "redis": {"replicas": None}}},
        ["spec.mode is immutable"],
    ),
    (
        "master-name-change",
        broker(sentinel={"masterName": "a"}),
        {"spec": {"sentinel": {"masterName": "b"}}},
        ["spec.sentinel.masterName is immutable"],
    ),
    (
        "master-name-add",
        broker(),
        {"spec": {"sentinel": {"masterName": "b"}}},
        ["spec.sentinel.masterName is immutable"],
    ),
    (
        "master-name-remove",
        broker(sentinel={"masterName": "a"}),
        {"spec": {"sentinel": {"masterName": None}}},
        ["spec.sentinel.masterName is immutable"],
    ),
]


@pytest.mark.parametrize(
    ("case", "resource", "patch", "expected"), IMMUTABLE, ids=[c[0] for c in IMMUTABLE]
)
def test_immutable_fields(
    custom: client.CustomObjectsApi,
    namespace: str,
    case: str,
    resource: tuple[str, dict[str, Any]],
    patch: dict[str, Any],
    expected: list[str],
) -> None:
    kind, spec = resource
    custom.create_namespaced_custom_object(G, V, namespace, PLURAL[kind], body(kind, case, spec))
    message = rejection(
        lambda: custom.patch_namespaced_custom_object(G, V, namespace, PLURAL[kind], case, patch)
    )
    for text in expected:
        assert text in message, message
