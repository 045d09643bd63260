"""External brokers: no pods, only reachability and connection info, against real
redis-server and redis-sentinel processes on loopback."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kubernetes import client
from test_broker import broker_status, condition, create_broker, wait_phase
from waiting import wait_for

from celeriac.localplane.controlplane import free_ports

pytestmark = pytest.mark.integration
PASSWORD = "ext-Pa55/word"  # not URL-safe on purpose


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A password-protected redis-server and one Sentinel (also protected) watching it."""
    redis_port, sentinel_port = free_ports(2)
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor ext 127.0.0.1 {redis_port} 1\n"
        f'sentinel auth-pass ext "{PASSWORD}"\nrequirepass "{PASSWORD}"\n'
    )
    procs = {
        "redis": subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--requirepass",
                PASSWORD,
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
        ),
        "sentinel": subprocess.Popen(["redis-sentinel", str(conf)], stdout=subprocess.DEVNULL),
    }
    r = redis.Redis(port=redis_port, password=PASSWORD)
    wait_for(lambda: _answers(r), 10, 0.05, "redis-server")
    s = redis.Redis(port=sentinel_port, password=PASSWORD)
    wait_for(lambda: _answers(s), 10, 0.05, "redis-sentinel")
    yield {"redis": redis_port, "sentinel": sentinel_port, "procs": procs}
    for p in procs.values():
        p.kill()
        p.wait()


def _answers(r: redis.Redis) -> bool:
    try:
        return bool(r.ping())
    except redis.RedisError:
        return False


def secret(core: client.CoreV1Api, ns: str) -> None:
    data = {"password": base64.b64encode(PASSWORD.encode()).decode()}
    core.create_namespaced_secret(
        ns, client.V1Secret(metadata=client.V1ObjectMeta(name="ext-auth"), data=data)
    )


def test_external_url_broker_ready_then_degraded(
    operator: Path,
    servers: dict[str, Any],
    custom: client.CustomObjectsApi,
    kube_api: client.ApiClient,
    namespace: str,
) -> None:
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    secret(core, namespace)
    external = {
        "url": f"redis://127.0.0.1:{servers['redis']}/0",
        "passwordSecret": {"name": "ext-auth"},
    }
    create_broker(custom, namespace, {"mode": "external", "external": external})
    status = wait_phase(custom, namespace, "Ready", 60)
    assert status["connection"]["brokerURL"] == f"redis://127.0.0.1:{servers['redis']}/0"
    assert status["connection"]["secretRef"] == {"name": "ext-auth", "key": "password"}
    assert not apps.list_namespaced_stateful_set(namespace).items  # no pods for external
    assert PASSWORD not in str(status) and PASSWORD not in operator.read_text()

    servers["procs"]["redis"].kill()
    status = wait_phase(custom, namespace, "Degraded", 60)
    assert condition(status, "Degraded")["reason"] == "Unreachable"
    assert f"127.0.0.1:{servers['redis']}" in condition(status, "Ready")["message"]
    events = core.list_namespaced_event(namespace).items
    assert PASSWORD not in str([e.message for e in events])


def test_external_sentinel_broker(
    operator: Path,
    servers: dict[str, Any],
    custom: client.CustomObjectsApi,
    kube_api: client.ApiClient,
    namespace: str,
) -> None:
    secret(client.CoreV1Api(kube_api), namespace)
    external = {
        "sentinels": [f"127.0.0.1:{servers['sentinel']}"],
        "masterName": "ext",
        "passwordSecret": {"name": "ext-auth"},
        "sentinelPasswordSecret": {"name": "ext-auth"},
    }
    create_broker(custom, namespace, {"mode": "external", "external": external})
    status = wait_phase(custom, namespace, "Ready", 60)
    conn = status["connection"]
    assert conn["masterName"] == "ext"
    assert conn["brokerURL"] == f"sentinel://127.0.0.1:{servers['sentinel']}/0"

    # A master name no Sentinel knows is reported, not read as healthy.
    patch = {"spec": {"external": {**external, "masterName": "nope"}}}
    custom.patch_namespaced_custom_object(
        "celeriac.io", "v1alpha1", namespace, "workflowbrokers", "b", patch
    )
    wait_for(
        lambda: (
            "knows nope" in condition(broker_status(custom, namespace), "Ready").get("message", "")
        ),
        60,
        0.2,
        "Unreachable: unknown master name",
    )
