"""WorkflowBrokers on the local control plane with the local node: real
redis-server and redis-sentinel processes run from what the operator rendered."""

from __future__ import annotations

import base64
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from kubernetes import client
from waiting import wait_for

pytestmark = pytest.mark.integration
G, V = "celeriac.io", "v1alpha1"
FAST = {"downAfterMilliseconds": 2000, "failoverTimeout": 10000}


def create_broker(custom: client.CustomObjectsApi, ns: str, spec: dict[str, Any]) -> None:
    body = {
        "apiVersion": f"{G}/{V}",
        "kind": "WorkflowBroker",
        "metadata": {"name": "b"},
        "spec": spec,
    }
    custom.create_namespaced_custom_object(G, V, ns, "workflowbrokers", body)


def broker_status(custom: client.CustomObjectsApi, ns: str) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object(G, V, ns, "workflowbrokers", "b")
    return dict(obj.get("status") or {})


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def wait_phase(
    custom: client.CustomObjectsApi, ns: str, phase: str, timeout: float = 120
) -> dict[str, Any]:
    return wait_for(
        lambda: (s := broker_status(custom, ns)).get("phase") == phase and s,
        timeout,
        0.1,
        f"broker phase {phase}",
    )


def password(core: client.CoreV1Api, ns: str) -> str:
    return base64.b64decode(core.read_namespaced_secret("b-auth", ns).data["password"]).decode()


def pid_of(core: client.CoreV1Api, ns: str, pod: str) -> int:
    status = core.read_namespaced_pod(pod, ns).status.container_statuses[0]
    return int(status.container_id.removeprefix("localnode://"))


def fqdn(ns: str, pod: str) -> str:
    kind = pod.rsplit("-", 1)[0]
    return f"{pod}.{kind}-headless.{ns}.svc.cluster.local"


def role_labels(core: client.CoreV1Api, ns: str) -> dict[str, str]:
    pods = core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/component=redis").items
    return {
        p.metadata.name: (p.metadata.labels or {}).get("celeriac.io/role", "")
        for p in pods
        if not p.metadata.deletion_timestamp
    }


def sentinel_views(ns: str, pw: str, count: int = 3) -> list[tuple[str, set[str]]]:
    views = []
    for i in range(count):
        with redis.Redis(
            host=fqdn(ns, f"b-sentinel-{i}"),
            port=26379,
            password=pw,
            decode_responses=True,
            socket_timeout=2,
        ) as s:
            master = s.sentinel_get_master_addr_by_name(f"{ns}.b")[0]
            views.append((master, {r["ip"] for r in s.sentinel_slaves(f"{ns}.b")}))
    return views


def test_standalone_broker_serves_clients(
    operator: Path, custom: client.CustomObjectsApi, kube_api: client.ApiClient, namespace: str
) -> None:
    create_broker(custom, namespace, {"mode": "standalone"})
    status = wait_phase(custom, namespace, "Ready")
    assert status["master"]["pod"] == "b-redis-0"
    assert (
        status["connection"]["brokerURL"]
        == f"redis://b-master.{namespace}.svc.cluster.local:6379/0"
    )
    pw = password(client.CoreV1Api(kube_api), namespace)
    with redis.Redis(host=f"b-master.{namespace}.svc.cluster.local", password=pw) as r:
        assert r.set("k", "v") and r.get("k") == b"v"
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=f"b-master.{namespace}.svc.cluster.local", password="wrong").ping()


def test_sentinel_broker_failover_and_scaling(
    operator: Path, custom: client.CustomObjectsApi, kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    create_broker(
        custom, namespace, {"mode": "sentinel", "redis": {"replicas": 2}, "sentinel": FAST}
    )
    status = wait_phase(custom, namespace, "Ready")
    pw = password(core, namespace)
    master_host = sentinel_views(namespace, pw)[0][0]
    assert status["master"]["address"] == master_host
    assert status["sentinels"] == {"known": 3, "quorumOk": True}
    assert [r["linkUp"] for r in status["replicas"]] == [True, True]
    old = status["master"]["pod"]
    assert role_labels(core, namespace)[old] == "master"
    with redis.Redis(host=master_host, password=pw) as m:
        for i in range(100):
            m.set(f"key{i}", i)
        m.wait(2, 2000)

    # Kill the master's process: Sentinels fail over, the operator follows.
    with redis.Redis(host=fqdn(namespace, "b-sentinel-0"), port=26379, password=pw) as s:
        sub = s.pubsub()
        sub.subscribe("+switch-master")
        os.kill(pid_of(core, namespace, old), signal.SIGKILL)
        message = wait_for(
            lambda: sub.get_message(timeout=0.5, ignore_subscribe_messages=True),
            30,
            0,
            "+switch-master",
        )
        switched = time.monotonic()
    new_master = str(message["data"], "utf-8").split()[3]
    new = new_master.split(".")[0]
    assert new != old
    wait_for(lambda: role_labels(core, namespace).get(new) == "master", 10, 0.02, "label")
    print(f"\nrole label moved {time.monotonic() - switched:.2f} s after +switch-master")
    status = wait_for(
        lambda: (s := broker_status(custom, namespace))["master"]["pod"] == new and s,
        10,
        0.05,
        "status.master",
    )
    assert status["failovers"]["count"] == 1

    # The old master restarts empty and rejoins as a replica of the new one.
    def rejoined() -> bool:
        try:
            with redis.Redis(host=fqdn(namespace, old), password=pw, socket_timeout=1) as r:
                info = r.info("replication")
                return (
                    info["role"] == "slave"
                    and info["master_link_status"] == "up"
                    and r.get("key99") == b"99"
                )
        except (redis.RedisError, OSError):
            return False

    wait_for(rejoined, 60, 0.2, "old master back as replica")
    assert role_labels(core, namespace)[old] == "replica"

    # Scale 2 -> 4 -> 1 replicas: the master survives, Sentinels forget removed pods.
    for replicas in (4, 1):
        custom.patch_namespaced_custom_object(
            G, V, namespace, "workflowbrokers", "b", {"spec": {"redis": {"replicas": replicas}}}
        )
        wanted = {fqdn(namespace, f"b-redis-{i}") for i in range(replicas + 1)}

        seen: list[Any] = []

        def settled(wanted: set[str] = wanted, seen: list[Any] = seen) -> bool:
            st = broker_status(custom, namespace)
            views = sentinel_views(namespace, pw)
            seen[:] = [st.get("phase"), st.get("replicas"), views]
            if st.get("phase") != "Ready" or len(st.get("replicas") or []) != len(wanted) - 1:
                return False
            return all(m in wanted and replicas_ | {m} == wanted for m, replicas_ in views)

        try:
            wait_for(settled, 120, 0.5, f"{replicas} replicas known to every Sentinel")
        except AssertionError as err:
            raise AssertionError(f"{err}; last seen: {seen}") from None
    with redis.Redis(host=f"b-master.{namespace}.svc.cluster.local", password=pw) as m:
        assert m.get("key42") == b"42"
