"""A pod's volumes on disk and its containers' bind mounts (development and tests only).

`PodVolumes` fetches what a pod's volumes and environment read (ConfigMaps,
Secrets, service-account tokens through the TokenRequest API), writes the
volumes under `<pod dir>/volumes/<name>` and turns a container's volumeMounts
into the `{source, target, readOnly}` list the sandbox binds. Content volumes
(configMap, secret, downwardAPI, projected) are always read-only, as in Kubernetes.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

from . import volumes
from .expand import expand, mapping_for
from .kubeapi import Kube
from .storage import Provisioner

CONTENT_VOLUMES = ("configMap", "secret", "downwardAPI", "projected")
TOKEN_REUSE = 0.8  # a token is reused for this share of its lifetime


class PodVolumes:
    def __init__(
        self, kube: Kube, storage: Provisioner, root: Path, namespace: str, name: str, uid: str
    ) -> None:
        self.kube = kube
        self.storage = storage
        self.root = root
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self._tokens: dict[tuple[str | None, int], tuple[str, float]] = {}

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        return self.kube.get(f"/api/v1/namespaces/{self.namespace}/{plural}/{name}")

    def data(self, plural: str, name: str) -> dict[str, str] | None:
        """A ConfigMap's or Secret's data as text (Secrets decoded), None when absent."""
        obj = self.get(plural, name)
        if obj is None:
            return None
        data: dict[str, str] = obj.get("data") or {}
        if plural == "secrets":
            return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
        return dict(data)

    def write(self, pod: dict[str, Any], pod_ip: str, host_ip: str) -> None:
        """Write (or refresh) every volume of the pod."""
        spec_volumes = pod["spec"].get("volumes") or []
        cm_names, secret_names = volumes.referenced_objects(spec_volumes)
        inputs = volumes.VolumeInputs(
            pod=pod,
            pod_ip=pod_ip,
            host_ip=host_ip,
            configmaps={n: self.get("configmaps", n) for n in cm_names},
            secrets={n: self.get("secrets", n) for n in secret_names},
            token=lambda audience, seconds: self._token(pod, audience, seconds),
        )
        for volume in spec_volumes:
            path = self.root / volume["name"]
            files = volumes.volume_files(volume, inputs)
            if files is not None:
                volumes.write_atomic(path, files)
            elif "emptyDir" in volume:
                path.mkdir(parents=True, exist_ok=True)

    def _token(self, pod: dict[str, Any], audience: str | None, expiration: int) -> str:
        """A token bound to the pod, reused for most of its lifetime."""
        cached = self._tokens.get((audience, expiration))
        if cached and time.monotonic() < cached[1]:
            return cached[0]
        account = pod["spec"].get("serviceAccountName") or "default"
        spec: dict[str, Any] = {
            "expirationSeconds": expiration,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": self.name,
                               "uid": self.uid},
        }  # fmt: skip
        if audience:
            spec["audiences"] = [audience]
        got = self.kube.request(
            "POST",
            f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        token = str(got["status"]["token"])
        self._tokens[(audience, expiration)] = (token, time.monotonic() + TOKEN_REUSE * expiration)
        return token

    def mounts(
        self, pod: dict[str, Any], container: dict[str, Any], env: dict[str, str]
    ) -> list[dict[str, Any]]:
        """The bind mounts of a container; VolumeError when one cannot be made (yet)."""
        by_name = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        mounts = []
        for m in container.get("volumeMounts") or []:
            volume = by_name.get(m["name"])
            if volume is None:
                raise volumes.VolumeError(f"volumeMount {m['name']!r} names no volume")
            source, read_only = self._source(volume)
            sub = m.get("subPath") or (
                expand(m["subPathExpr"], mapping_for(env)) if m.get("subPathExpr") else ""
            )
            if sub:
                if sub.startswith("/") or ".." in Path(sub).parts:
                    raise volumes.VolumeError(f"invalid subPath {sub!r}")
                source = source / sub
                if not source.exists() and not read_only and "hostPath" not in volume:
                    source.mkdir(parents=True)  # as the kubelet does for writable volumes
                source = source.resolve()
            if not source.exists():
                raise volumes.VolumeError(f"volume {m['name']!r}: {source} does not exist")
            mounts.append(
                {
                    "source": str(source),
                    "target": m["mountPath"],
                    "readOnly": read_only or bool(m.get("readOnly")),
                }
            )
        return mounts

    def _source(self, volume: dict[str, Any]) -> tuple[Path, bool]:
        """(host directory, read-only) of a volume."""
        if volume.get("hostPath"):
            return Path(volume["hostPath"]["path"]), False
        if volume.get("persistentVolumeClaim"):
            claim = volume["persistentVolumeClaim"]
            try:
                path = self.storage.host_path(self.namespace, claim["claimName"])
            except LookupError as e:
                raise volumes.VolumeError(str(e)) from e
            return path, bool(claim.get("readOnly"))
        return self.root / volume["name"], any(k in volume for k in CONTENT_VOLUMES)
