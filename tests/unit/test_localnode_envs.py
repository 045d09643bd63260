"""A container's environment as the kubelet builds it (local node, pure part)."""

from __future__ import annotations

from typing import Any

import pytest

from celeriac.localnode.envs import EnvError, PodContext, container_env, referenced_objects
from celeriac.localnode.fields import FieldError, format_map, parse_quantity, resource_field

POD: dict[str, Any] = {
    "metadata": {
        "name": "web-0",
        "namespace": "shop",
        "uid": "1234",
        "labels": {"app": "web", "tier": "front"},
        "annotations": {"note": 'say "hi"'},
    },
    "spec": {
        "nodeName": "localnode-2",
        "serviceAccountName": "robot",
        "containers": [
            {
                "name": "c",
                "resources": {
                    "limits": {"cpu": "1500m", "memory": "64Mi"},
                    "requests": {"cpu": "250m"},
                },
            },
            {"name": "bare"},
        ],
    },
}
CTX = PodContext(POD, "10.250.2.7", "10.250.0.1")
CMS = {"cfg": {"A": "from-cm", "B": "b", "bad=name": "x"}}
SECRETS = {"sec": {"password": "s3cret"}}


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return container_env(CTX, {"name": "c", **container}, CMS, SECRETS)


def test_env_from_then_env_with_prefix_and_override() -> None:
    env = env_of(
        {
            "envFrom": [
                {"configMapRef": {"name": "cfg"}},
                {"secretRef": {"name": "sec"}, "prefix": "S_"},
            ],
            "env": [{"name": "A", "value": "from-env"}],
        }
    )
    assert env == {"A": "from-env", "B": "b", "S_password": "s3cret"}  # "bad=name" skipped


def test_values_expand_against_earlier_entries_only() -> None:
    env = env_of(
        {
            "envFrom": [{"configMapRef": {"name": "cfg"}}],
            "env": [
                {"name": "FIRST", "value": "$(B)-$(SECOND)"},
                {"name": "SECOND", "value": "two"},
                {"name": "THIRD", "value": "$(SECOND)$$(SECOND)"},
                {"name": "EMPTY", "value": ""},
                {"name": "SECOND", "value": "again"},  # a later definition wins
            ],
        }
    )
    assert env["FIRST"] == "b-$(SECOND)"
    assert env["THIRD"] == "two$(SECOND)"
    assert env["EMPTY"] == ""
    assert env["SECOND"] == "again"
    assert list(env)[-4:] == ["FIRST", "SECOND", "THIRD", "EMPTY"]


def test_key_refs_and_optional_references() -> None:
    env = env_of(
        {
            "envFrom": [{"configMapRef": {"name": "nope", "optional": True}}],
            "env": [
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
                {
                    "name": "MAYBE",
                    "valueFrom": {
                        "configMapKeyRef": {"name": "cfg", "key": "missing", "optional": True}
                    },
                },
                {
                    "name": "MAYBE2",
                    "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}},
                },
            ],
        }
    )
    assert env == {"PW": "s3cret"}


@pytest.mark.parametrize(
    ("container", "message"),
    [
        ({"envFrom": [{"configMapRef": {"name": "nope"}}]}, 'configmap "nope" not found'),
        (
            {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]},
            'secret "nope" not found',
        ),
        (
            {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]},
            "couldn't find key k in configmap shop/cfg",
        ),
    ],
)
def test_missing_required_references_fail(container: dict[str, Any], message: str) -> None:
    with pytest.raises(EnvError, match=message) as info:
        env_of(container)
    assert info.value.reason == "CreateContainerConfigError"


def test_field_refs() -> None:
    paths = {
        "NAME": "metadata.name",
        "NS": "metadata.namespace",
        "UID": "metadata.uid",
        "APP": "metadata.labels['app']",
        "NOTE": "metadata.annotations['note']",
        "NODE": "spec.nodeName",
        "SA": "spec.serviceAccountName",
        "IP": "status.podIP",
        "HOST": "status.hostIP",
    }
    env = env_of(
        {
            "env": [
                {"name": k, "valueFrom": {"fieldRef": {"fieldPath": v}}} for k, v in paths.items()
            ]
        }
    )
    assert env == {
        "NAME": "web-0", "NS": "shop", "UID": "1234", "APP": "web", "NOTE": 'say "hi"',
        "NODE": "localnode-2", "SA": "robot", "IP": "10.250.2.7", "HOST": "10.250.0.1",
    }  # fmt: skip
    with pytest.raises(EnvError, match="unsupported fieldPath"):
        env_of({"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]})


@pytest.mark.parametrize(
    ("container", "ref", "want"),
    [
        ("c", {"resource": "limits.cpu"}, "2"),  # 1.5 cores rounded up
        ("c", {"resource": "limits.cpu", "divisor": "1m"}, "1500"),
        ("c", {"resource": "requests.cpu", "divisor": "100m"}, "3"),
        ("c", {"resource": "limits.memory"}, str(64 * 2**20)),
        ("c", {"resource": "limits.memory", "divisor": "1Mi"}, "64"),
        ("c", {"resource": "requests.memory"}, "0"),
        ("bare", {"resource": "limits.cpu"}, "8"),  # node allocatable
        ("bare", {"resource": "limits.memory", "divisor": "1Gi"}, "16"),
    ],
)
def test_resource_field_refs(container: str, ref: dict[str, Any], want: str) -> None:
    assert resource_field(POD, container, ref) == want


def test_quantities_and_label_files() -> None:
    assert parse_quantity("100m") * 10 == 1
    assert parse_quantity("1.5Gi") == 3 * 2**29
    assert parse_quantity("2e3") == 2000
    assert parse_quantity(3) == 3
    with pytest.raises(FieldError):
        parse_quantity("12XB")
    assert format_map({"b": 'q"x', "a": "1"}) == 'a="1"\nb="q\\"x"'


def test_referenced_objects() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "a"}}, {"secretRef": {"name": "s1"}}],
        "env": [
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "b", "key": "k"}}},
            {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "k"}}},
        ],
    }
    assert referenced_objects(container) == ({"a", "b"}, {"s1", "s2"})
