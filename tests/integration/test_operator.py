"""`celeriac run` as a real process against the real API server."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from waiting import wait_for

from celeriac.apply import FIELD_MANAGER

pytestmark = pytest.mark.integration
G, V = "celeriac.io", "v1alpha1"


def start_operator(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "celeriac.cli", "run", *args],
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def status_of(custom: client.CustomObjectsApi, ns: str, plural: str, name: str) -> Any:
    return custom.get_namespaced_custom_object(G, V, ns, plural, name).get("status") or {}


def ready_reason(status: dict[str, Any]) -> str | None:
    for cond in status.get("conditions") or []:
        if cond["type"] == "Ready":
            return str(cond["reason"])
    return None


def test_operator_reconciles_and_stops_cleanly(
    control_plane: Any, custom: client.CustomObjectsApi, namespace: str, tmp_path: Path
) -> None:
    log = tmp_path / "operator.log"
    proc = start_operator(
        {"KUBECONFIG": str(control_plane.kubeconfig)}, "--no-local", "-n", namespace, log=log
    )
    try:
        wait_for(lambda: "operator running" in log.read_text(), 60, what="operator start")
        broker = {
            "apiVersion": f"{G}/{V}",
            "kind": "WorkflowBroker",
            "metadata": {"name": "b"},
            "spec": {"mode": "sentinel"},
        }
        pool = {
            "apiVersion": f"{G}/{V}",
            "kind": "WorkerPool",
            "metadata": {"name": "p"},
            "spec": {"brokerRef": {"name": "b"}, "image": "w", "app": "proj:app"},
        }
        custom.create_namespaced_custom_object(G, V, namespace, "workflowbrokers", broker)
        custom.create_namespaced_custom_object(G, V, namespace, "workerpools", pool)
        st = wait_for(
            lambda: (
                status_of(custom, namespace, "workflowbrokers", "b").get("observedGeneration") == 1
                and status_of(custom, namespace, "workflowbrokers", "b")
            ),
            what="broker observedGeneration",
        )
        assert ready_reason(st) == "NoMaster"  # no node runs the pods in this test
        assert st["connection"]["masterName"] == f"{namespace}.b"
        st = wait_for(
            lambda: (
                status_of(custom, namespace, "workerpools", "p").get("observedGeneration") == 1
                and status_of(custom, namespace, "workerpools", "p")
            ),
            what="pool observedGeneration",
        )
        assert ready_reason(st) == "BrokerNotReady"

        # A spec change is a new generation, and the operator follows it.
        custom.patch_namespaced_custom_object(
            G, V, namespace, "workerpools", "p", {"spec": {"brokerRef": {"name": "missing"}}}
        )
        st = wait_for(
            lambda: (
                status_of(custom, namespace, "workerpools", "p").get("observedGeneration") == 2
                and status_of(custom, namespace, "workerpools", "p")
            ),
            what="pool observedGeneration 2",
        )
        assert ready_reason(st) == "BrokerNotFound"
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()[-3000:]
    assert "operator stopped" in log.read_text()


def test_broker_objects_are_applied_once_and_collected(
    control_plane: Any,
    kube_api: client.ApiClient,
    custom: client.CustomObjectsApi,
    namespace: str,
    tmp_path: Path,
) -> None:
    log = tmp_path / "operator.log"
    proc = start_operator(
        {"KUBECONFIG": str(control_plane.kubeconfig)}, "--no-local", "-n", namespace, log=log
    )
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    try:
        wait_for(lambda: "operator running" in log.read_text(), 60, what="operator start")
        broker = {
            "apiVersion": f"{G}/{V}",
            "kind": "WorkflowBroker",
            "metadata": {"name": "b"},
            "spec": {"mode": "sentinel", "redis": {"replicas": 1}},
        }
        custom.create_namespaced_custom_object(G, V, namespace, "workflowbrokers", broker)
        wait_for(
            lambda: status_of(custom, namespace, "workflowbrokers", "b").get("connection"),
            what="broker status",
        )
        redis = apps.read_namespaced_stateful_set("b-redis", namespace)
        sentinel = apps.read_namespaced_stateful_set("b-sentinel", namespace)
        assert (redis.spec.replicas, sentinel.spec.replicas) == (2, 3)
        assert redis.metadata.owner_references[0].name == "b"
        secret = core.read_namespaced_secret("b-auth", namespace)
        assert len(secret.data["password"]) > 40  # base64 of 32 characters
        password = base64.b64decode(secret.data["password"]).decode()
        for cm in core.list_namespaced_config_map(namespace).items:
            assert password not in str(cm.data), cm.metadata.name
        assert password not in str(redis.spec) + str(sentinel.spec)

        # Idle reconciles (the timer runs every 5 s) write nothing. Controllers and
        # the local node may still write status, so look at our own writes only.
        # The topology ConfigMap legitimately changes while pods come up (when a
        # local node runs them), so wait for the broker to settle: a reconcile that
        # writes every time would never give a quiet 6 s.
        def quiet() -> bool:
            before = our_writes(core, apps, namespace)
            time.sleep(6)
            return our_writes(core, apps, namespace) == before

        wait_for(quiet, 120, 0, what="6 s without a write by the operator")
        assert password not in log.read_text()

        custom.delete_namespaced_custom_object(G, V, namespace, "workflowbrokers", "b")
        # The garbage collector learns new CRDs on its 30 s discovery resync.
        wait_for(
            lambda: not apps.list_namespaced_stateful_set(namespace).items,
            120,
            what="garbage collection of the StatefulSets",
        )
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]


def our_writes(core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str) -> dict[str, Any]:
    """Generation and the times of the operator's field-manager entries, per object."""
    objects = [
        *apps.list_namespaced_stateful_set(namespace).items,
        *core.list_namespaced_service(namespace).items,
        *core.list_namespaced_config_map(namespace).items,
        *core.list_namespaced_secret(namespace).items,
    ]
    return {
        f"{type(o).__name__}/{o.metadata.name}": (
            o.metadata.generation,
            sorted(
                str(m.time) for m in o.metadata.managed_fields or [] if m.manager == FIELD_MANAGER
            ),
        )
        for o in objects
    }


def test_run_without_cluster_starts_local_plane(tmp_path: Path, control_plane: Any) -> None:
    """No reachable cluster: `celeriac run` says so, starts its own plane, installs
    the CRDs, reconciles, and leaves no process behind on SIGTERM."""
    log = tmp_path / "operator.log"
    env = {
        "KUBECONFIG": str(tmp_path / "no-such-kubeconfig"),
        "CELERIAC_CONTROL_PLANE_BIN": str(control_plane.bin_dir),
    }
    proc = start_operator(env, log=log)
    try:
        wait_for(lambda: "operator running" in log.read_text(), 120, 0.2, "operator start")
        text = log.read_text()
        assert "starting the built-in LOCAL control plane" in text
        kubeconfig = re.search(r"export KUBECONFIG=(\S+)", text)
        assert kubeconfig, text
        api = client.CustomObjectsApi(_client(kubeconfig.group(1)))
        broker = {
            "apiVersion": f"{G}/{V}",
            "kind": "WorkflowBroker",
            "metadata": {"name": "b"},
            "spec": {"mode": "standalone"},
        }
        api.create_namespaced_custom_object(G, V, "default", "workflowbrokers", broker)
        wait_for(
            lambda: status_of(api, "default", "workflowbrokers", "b").get("observedGeneration"),
            what="reconcile on the local plane",
        )
        workdir = str(Path(kubeconfig.group(1)).parent)
    finally:
        code = stop(proc, 60)
    assert code == 0, log.read_text()[-3000:]
    time.sleep(0.2)
    leftovers = subprocess.run(["pgrep", "-f", workdir], capture_output=True, text=True).stdout
    assert not leftovers.strip(), f"processes of the local plane survived: {leftovers}"


def _client(kubeconfig: str) -> client.ApiClient:
    from celeriac import kube

    return kube.api_client(kubeconfig)
