"""PersistentVolumeClaims for local-node pods: a tiny provisioner and binder (dev and tests only).

The local plane runs no PersistentVolume controller and no provisioner, so a
StatefulSet with volumeClaimTemplates would never schedule. The agent binds
every pending claim of the default class (no storageClassName, "" or
`localnode`) to a new hostPath PersistentVolume under `<state>/volumes/` and
marks both Bound, as the PV controller would; when the claim goes, the volume
and its directory go too (reclaim policy Delete). Capacity is not enforced.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from .kubeapi import MERGE_PATCH, ApiError, Kube

log = logging.getLogger("celeriac.localnode")

STORAGE_CLASSES = (None, "", "localnode")
PROVISIONED_LABEL = "celeriac.io/localnode-provisioned"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"


def wants_volume(pvc: dict[str, Any]) -> bool:
    """A claim this node should provision: pending, unbound, of the default class."""
    spec = pvc.get("spec", {})
    return (
        not pvc["metadata"].get("deletionTimestamp")
        and not spec.get("volumeName")
        and spec.get("storageClassName") in STORAGE_CLASSES
        and spec.get("volumeMode", "Filesystem") == "Filesystem"
    )


def volume_for(pvc: dict[str, Any], path: Path) -> dict[str, Any]:
    """The PersistentVolume that satisfies a claim, pre-bound to it."""
    meta, spec = pvc["metadata"], pvc.get("spec", {})
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"pvc-{meta['uid']}", "labels": {PROVISIONED_LABEL: "true"}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": spec.get("storageClassName") or "",
            "volumeMode": "Filesystem",
            "hostPath": {"path": str(path), "type": "Directory"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }


class Provisioner:
    def __init__(self, kube: Kube, root: Path) -> None:
        self.kube = kube
        self.root = root

    def on_claim(self, kind: str, pvc: dict[str, Any]) -> None:
        try:
            if kind == "DELETED":
                self._release(pvc)
            elif wants_volume(pvc):
                self._bind(pvc)
        except (ApiError, OSError) as e:
            meta = pvc["metadata"]
            log.warning("claim %s/%s: %s", meta.get("namespace"), meta.get("name"), e)

    def _bind(self, pvc: dict[str, Any]) -> None:
        meta = pvc["metadata"]
        path = self.root / f"pvc-{meta['uid']}"
        path.mkdir(parents=True, exist_ok=True)
        pv = volume_for(pvc, path)
        try:
            self.kube.request("POST", "/api/v1/persistentvolumes", body=pv)
        except ApiError as e:
            if e.status != 409:
                raise
        name = pv["metadata"]["name"]
        claim = f"/api/v1/namespaces/{meta['namespace']}/persistentvolumeclaims/{meta['name']}"
        self.kube.request(
            "PATCH",
            claim,
            body={
                "metadata": {"uid": meta["uid"], "annotations": {BIND_COMPLETED: "yes"}},
                "spec": {"volumeName": name},
            },
            content_type=MERGE_PATCH,
        )
        status = {
            "phase": "Bound",
            "accessModes": pv["spec"]["accessModes"],
            "capacity": pv["spec"]["capacity"],
        }
        self.kube.request(
            "PATCH", f"{claim}/status", body={"status": status}, content_type=MERGE_PATCH
        )
        self.kube.request(
            "PATCH",
            f"/api/v1/persistentvolumes/{name}/status",
            body={"status": {"phase": "Bound"}},
            content_type=MERGE_PATCH,
        )
        log.info("claim %s/%s bound to %s", meta["namespace"], meta["name"], path)

    def _release(self, pvc: dict[str, Any]) -> None:
        name = f"pvc-{pvc['metadata']['uid']}"
        pv = self.kube.get(f"/api/v1/persistentvolumes/{name}")
        if pv is None or (pv["metadata"].get("labels") or {}).get(PROVISIONED_LABEL) != "true":
            return
        try:
            self.kube.request("DELETE", f"/api/v1/persistentvolumes/{name}")
        except ApiError as e:
            if e.status != 404:
                raise
        shutil.rmtree(self.root / name, ignore_errors=True)

    def host_path(self, namespace: str, claim: str) -> Path:
        """Where a bound claim's data lives (for a pod's persistentVolumeClaim volume)."""
        pvc = self.kube.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
        if pvc is None:
            raise LookupError(f'persistentvolumeclaim "{claim}" not found')
        volume = pvc.get("spec", {}).get("volumeName")
        pv = self.kube.get(f"/api/v1/persistentvolumes/{volume}") if volume else None
        if pv is None or not (pv.get("spec", {}).get("hostPath") or {}).get("path"):
            raise LookupError(f'persistentvolumeclaim "{claim}" is not bound to a local volume')
        return Path(pv["spec"]["hostPath"]["path"])
