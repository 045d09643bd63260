"""Broker rendering: golden output per mode, and one spec change changes only what
it should."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from celeriac.api import WorkflowBrokerSpec
from celeriac.render.broker import BrokerFacts, render_broker
from celeriac.render.connection import connection
from celeriac.render.meta import Owner
from celeriac.render.yamlout import dump_all

GOLDEN = Path(__file__).parent / "golden"
OWNER = Owner("WorkflowBroker", "b", "ns", "uid-1")
SPECS: dict[str, dict[str, Any]] = {
    "standalone": {"mode": "standalone", "redis": {"persistence": {"type": "aof"}}},
    "sentinel": {
        "mode": "sentinel",
        "redis": {"replicas": 2, "minReplicasToWrite": 1, "maxmemory": "400Mi"},
        "sentinel": {"replicas": 3, "downAfterMilliseconds": 3000},
    },
    "external": {"mode": "external", "external": {"sentinels": ["s1:26379"], "masterName": "m"}},
}


def render(spec: dict[str, Any], facts: BrokerFacts | None = None) -> list[dict[str, Any]]:
    return render_broker(OWNER, WorkflowBrokerSpec.model_validate(spec), facts or BrokerFacts())


@pytest.mark.parametrize("mode", SPECS)
def test_golden(mode: str) -> None:
    text = dump_all(render(SPECS[mode]))
    path = GOLDEN / f"broker-{mode}.yaml"
    if os.environ.get("CELERIAC_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"set CELERIAC_UPDATE_GOLDEN=1 to accept changes to {path}"


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        return {
            k: v for key, val in obj.items() for k, v in flatten(val, f"{prefix}/{key}").items()
        }
    if isinstance(obj, list):
        # Entries with a name (env, containers, volumes) are keyed by it, not position.
        keys = [v["name"] if isinstance(v, dict) and "name" in v else i for i, v in enumerate(obj)]
        return {
            k: v
            for key, val in zip(keys, obj, strict=True)
            for k, v in flatten(val, f"{prefix}[{key}]").items()
        }
    return {prefix: obj}


def changed(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    a = {
        k: v
        for o in render(before)
        for k, v in flatten(o, f"{o['kind']}/{o['metadata']['name']}").items()
    }
    b = {
        k: v
        for o in render(after)
        for k, v in flatten(o, f"{o['kind']}/{o['metadata']['name']}").items()
    }
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


def with_change(base: dict[str, Any], section: str, **values: Any) -> dict[str, Any]:
    return {**base, section: {**base.get(section, {}), **values}}


HASH = "/spec/template/metadata/annotations/celeriac.io~config-hash".replace("~", "/")


def test_down_after_changes_sentinel_config_and_env_only() -> None:
    base = SPECS["sentinel"]
    diff = changed(base, with_change(base, "sentinel", downAfterMilliseconds=4000))
    assert diff == {
        "ConfigMap/b-broker-config/data/sentinel-master.conf",
        "StatefulSet/b-sentinel" + HASH,
        "StatefulSet/b-redis/spec/template/spec/containers[redis]/env[DOWN_AFTER_MS]/value",
        "StatefulSet/b-sentinel/spec/template/spec/containers[sentinel]/env[DOWN_AFTER_MS]/value",
    }


def test_replicas_change_only_the_count_no_pod_restarts() -> None:
    base = SPECS["sentinel"]
    diff = changed(base, with_change(base, "redis", replicas=4))
    assert diff == {"StatefulSet/b-redis/spec/replicas"}


def test_image_change_touches_only_images() -> None:
    base = SPECS["sentinel"]
    diff = changed(base, with_change(base, "redis", image="redis:7.4"))
    assert diff == {
        "StatefulSet/b-redis/spec/template/spec/containers[redis]/image",
        "StatefulSet/b-sentinel/spec/template/spec/containers[sentinel]/image",
    }


def test_maxmemory_changes_redis_conf_and_hash() -> None:
    base = SPECS["sentinel"]
    diff = changed(base, with_change(base, "redis", maxmemory="1Gi"))
    assert diff == {
        "ConfigMap/b-broker-config/data/redis.conf",
        "StatefulSet/b-redis" + HASH,  # the Sentinels do not restart for a Redis setting
    }


def test_bootstrap_flips_only_the_topology_config_map() -> None:
    spec = SPECS["sentinel"]
    a = render(spec, BrokerFacts(bootstrapped=False))
    b = render(spec, BrokerFacts(bootstrapped=True))
    diffs = [(x["metadata"]["name"], x.get("data")) for x, y in zip(a, b, strict=True) if x != y]
    assert diffs == [("b-topology", {"bootstrap": "allowed"})]


def test_no_secret_values_and_secret_refs_only() -> None:
    spec = {**SPECS["sentinel"], "auth": {"existingSecret": {"name": "mine", "key": "pw"}}}
    objects = render(spec)
    assert not [o for o in objects if o["kind"] == "Secret"]
    env = objects[4]["spec"]["template"]["spec"]["containers"][0]["env"]
    pw = [e for e in env if e["name"] == "REDIS_PASSWORD"]
    assert pw == [
        {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "mine", "key": "pw"}}}
    ]


def test_unique_master_name_and_connection() -> None:
    spec = WorkflowBrokerSpec.model_validate(SPECS["sentinel"])
    conn = connection("b", "ns", spec)
    assert conn.master_name == "ns.b"
    assert conn.broker_url.split(";")[0] == (
        "sentinel://b-sentinel-0.b-sentinel-headless.ns.svc.cluster.local:26379/0"
    )
    assert len(conn.broker_url.split(";")) == 3
    assert all(u.endswith("/1") for u in conn.result_backend_url.split(";"))
    assert conn.status()["secretRef"] == {"name": "b-auth", "key": "password"}
    standalone = connection("b", "ns", WorkflowBrokerSpec.model_validate(SPECS["standalone"]))
    assert standalone.broker_url == "redis://b-master.ns.svc.cluster.local:6379/0"
    ext = connection("e", "ns", WorkflowBrokerSpec.model_validate(SPECS["external"]))
    assert (ext.master_name, ext.broker_url) == ("m", "sentinel://s1:26379/0")


def test_generated_documents_are_valid_yaml() -> None:
    docs = list(yaml.safe_load_all(dump_all(render(SPECS["sentinel"]))))
    assert [d["kind"] for d in docs] == [
        "ConfigMap",
        "ConfigMap",
        "Service",
        "Service",
        "StatefulSet",
        "Service",
        "Service",
        "StatefulSet",
        "PodDisruptionBudget",
        "PodDisruptionBudget",
    ]
