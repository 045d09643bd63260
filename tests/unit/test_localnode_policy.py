"""Pure lifecycle policy of the local node: probes, restarts, pod status, volumes."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from celeriac.localnode.probes import LIVENESS, READINESS, STARTUP, ProbeState
from celeriac.localnode.restarts import Backoff, should_restart
from celeriac.localnode.status import ContainerRecord, phase, pod_status, waiting
from celeriac.localnode.volumes import (
    VolumeError,
    VolumeInputs,
    referenced_objects,
    volume_files,
    write_atomic,
)


def test_probe_thresholds() -> None:
    ready = ProbeState.for_probe(READINESS, {"successThreshold": 2, "failureThreshold": 2})
    assert ready.ok is False
    assert not ready.record(True)
    assert ready.record(True) and ready.ok  # two successes in a row
    assert not ready.record(False)
    assert not ready.record(True)  # the failure run was broken
    assert not ready.record(False)
    assert ready.record(False) and ready.ok is False
    live = ProbeState.for_probe(LIVENESS, {})
    assert live.ok is True
    assert not live.record(False) and not live.record(False)
    assert live.record(False) and live.ok is False  # default failureThreshold 3
    startup = ProbeState.for_probe(STARTUP, {"failureThreshold": 1})
    assert startup.ok is None
    assert startup.record(False) and startup.ok is False  # unknown -> failed is a change


def test_restart_policy() -> None:
    assert should_restart("Always", 0) and should_restart("Always", 1)
    assert should_restart("OnFailure", 2) and not should_restart("OnFailure", 0)
    assert not should_restart("Never", 1)


def test_backoff_like_the_kubelet() -> None:
    backoff = Backoff()
    assert [backoff.delay(s) for s in range(7)] == [0, 10, 20, 40, 80, 160, 300]
    assert backoff.after_exit(0, ran_for=1) == (0, 1)  # the first restart is immediate
    assert backoff.after_exit(3, ran_for=5) == (40, 4)
    assert backoff.after_exit(3, ran_for=601) == (0, 1)  # ran long: reset
    fast = Backoff.from_env({"CELERIAC_LOCALNODE_BACKOFF_BASE": "1"})
    assert [fast.delay(s) for s in range(4)] == [0, 1, 2, 4] and fast.cap == 300


def rec(state: dict[str, Any], last: dict[str, Any] | None = None) -> ContainerRecord:
    return ContainerRecord(name="c", image="busybox", state=state, last_state=last or {})


RUNNING = {"running": {"startedAt": "t"}}
DONE_OK = {"terminated": {"exitCode": 0}}
DONE_BAD = {"terminated": {"exitCode": 1}}


@pytest.mark.parametrize(
    ("policy", "records", "want"),
    [
        ("Always", [rec(waiting("ContainerCreating"))], "Pending"),
        ("Always", [rec(RUNNING), rec(waiting("ErrImagePull"))], "Pending"),
        ("Always", [rec(RUNNING), rec(waiting("CrashLoopBackOff"), DONE_BAD)], "Running"),
        ("Always", [rec(DONE_OK)], "Running"),
        ("OnFailure", [rec(DONE_OK), rec(DONE_OK)], "Succeeded"),
        ("OnFailure", [rec(waiting("CrashLoopBackOff"), DONE_BAD)], "Running"),
        ("Never", [rec(DONE_OK), rec(DONE_BAD)], "Failed"),
        ("Never", [rec(RUNNING), rec(DONE_BAD)], "Running"),
    ],
)
def test_phase(policy: str, records: list[ContainerRecord], want: str) -> None:
    assert phase(policy, True, False, records) == want


def test_phase_during_init() -> None:
    assert phase("Always", False, False, [rec(waiting("PodInitializing"))]) == "Pending"
    assert phase("Never", False, True, []) == "Failed"


def test_pod_status_conditions() -> None:
    pod: dict[str, Any] = {
        "spec": {"restartPolicy": "Always"},
        "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]},
    }
    ready = rec(RUNNING)
    ready.ready = ready.started = True
    unready = rec(RUNNING)
    unready.name = "slow"
    args: dict[str, Any] = dict(
        pod_ip="10.250.1.2",
        host_ip="10.250.0.1",
        start_time="t0",
        sandbox_ready=True,
        init_containers=[],
        init_done=True,
        init_failed=False,
    )
    status = pod_status(pod, containers=[ready, unready], **args)
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["PodScheduled"]["status"] == "True"  # kept as it was
    assert conds["Initialized"]["status"] == "True"
    assert conds["Ready"]["status"] == "False"
    assert conds["ContainersReady"]["message"] == "containers with unready status: [slow]"
    assert status["phase"] == "Running" and status["podIPs"] == [{"ip": "10.250.1.2"}]
    # Transition times survive while the status stays the same.
    again = pod_status(
        pod, containers=[ready, unready], written_conditions=status["conditions"], **args
    )
    assert again == status


def inputs(**objects: Any) -> VolumeInputs:
    return VolumeInputs(
        pod={"metadata": {"name": "p", "namespace": "n", "labels": {"a": "1"}}, "spec": {}},
        pod_ip="10.250.1.2",
        host_ip="10.250.0.1",
        configmaps=objects.get("configmaps", {}),
        secrets=objects.get("secrets", {}),
        token=lambda audience, seconds: f"token-{audience}-{seconds}",
    )


CM = {
    "data": {"a.conf": "A", "b.conf": "B"},
    "binaryData": {"bin": base64.b64encode(b"\0").decode()},
}
SECRET = {"data": {"pw": base64.b64encode(b"s3cret").decode()}}


def test_volume_files() -> None:
    ins = inputs(
        configmaps={"cm": CM, "kube-root-ca.crt": {"data": {"ca.crt": "CA"}}},
        secrets={"sec": SECRET},
    )
    assert volume_files({"name": "v", "configMap": {"name": "cm"}}, ins) == {
        "a.conf": (b"A", 0o644), "b.conf": (b"B", 0o644), "bin": (b"\0", 0o644),
    }  # fmt: skip
    items = {"name": "cm", "items": [{"key": "a.conf", "path": "sub/x.conf", "mode": 0o600}]}
    assert volume_files({"name": "v", "configMap": items}, ins) == {"sub/x.conf": (b"A", 0o600)}
    assert volume_files(
        {"name": "v", "secret": {"secretName": "sec", "defaultMode": 0o400}}, ins
    ) == {"pw": (b"s3cret", 0o400)}
    assert volume_files({"name": "v", "configMap": {"name": "gone", "optional": True}}, ins) == {}
    with pytest.raises(VolumeError, match='configmap "gone" not found'):
        volume_files({"name": "v", "configMap": {"name": "gone"}}, ins)
    projected = {"name": "kube-api-access", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
    ]}}  # fmt: skip
    assert volume_files(projected, ins) == {
        "token": (b"token-None-3607", 0o644), "ca.crt": (b"CA", 0o644),
        "namespace": (b"n", 0o644),
    }  # fmt: skip
    assert volume_files({"name": "e", "emptyDir": {}}, ins) is None
    assert volume_files({"name": "c", "persistentVolumeClaim": {"claimName": "x"}}, ins) is None
    with pytest.raises(VolumeError, match="not supported"):
        volume_files({"name": "v", "nfs": {"server": "x", "path": "/"}}, ins)
    assert referenced_objects([projected, {"name": "s", "secret": {"secretName": "sec"}}]) == (
        {"kube-root-ca.crt"},
        {"sec"},
    )


def test_atomic_writer(tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    assert write_atomic(vol, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})
    assert (vol / "a").read_text() == "1" and (vol / "dir" / "b").read_text() == "2"
    assert os.stat(vol / "dir" / "b").st_mode & 0o777 == 0o600
    assert (vol / "a").is_symlink() and os.readlink(vol / "a") == "..data/a"
    assert not write_atomic(vol, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})
    assert write_atomic(vol, {"a": (b"changed", 0o644)})
    assert (vol / "a").read_text() == "changed" and not (vol / "dir").exists()
    assert (
        len(
            [
                p
                for p in vol.iterdir()
                if p.name.startswith("..") and p.is_dir() and not p.is_symlink()
            ]
        )
        == 1
    )  # the old generation is gone
    with pytest.raises(VolumeError):
        write_atomic(vol, {"../escape": (b"x", 0o644)})


def test_claims_of_the_default_class_get_a_prebound_host_path_volume(tmp_path: Path) -> None:
    from celeriac.localnode.storage import volume_for, wants_volume

    pvc: dict[str, Any] = {
        "metadata": {"name": "data-redis-0", "namespace": "n", "uid": "u1"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
    }
    assert wants_volume(pvc)
    assert not wants_volume({**pvc, "spec": {**pvc["spec"], "storageClassName": "fast-ssd"}})
    assert not wants_volume({**pvc, "spec": {**pvc["spec"], "volumeName": "pv-1"}})
    pv = volume_for(pvc, tmp_path / "pvc-u1")
    assert pv["metadata"]["name"] == "pvc-u1"
    assert pv["spec"]["capacity"] == {"storage": "2Gi"}
    assert pv["spec"]["hostPath"]["path"] == str(tmp_path / "pvc-u1")
    assert pv["spec"]["claimRef"] == {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "n",
        "name": "data-redis-0", "uid": "u1",
    }  # fmt: skip
