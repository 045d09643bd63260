"""Pod volumes materialised as files in a per-pod directory (development and tests only).

`volume_files` is pure: it decides which files a configMap, secret, downwardAPI
or projected volume holds. `write_atomic` lays them out like the kubelet's
atomic writer (a timestamped directory, a `..data` symlink swapped by rename,
and one symlink per top-level name), so updates appear to a process at once.
emptyDir is a plain directory; hostPath binds an existing host path and
persistentVolumeClaim the directory of its bound volume (see storage.py).
Other volume types are not supported.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .fields import FieldError, pod_field, resource_field

DEFAULT_MODE = 0o644
# name -> the whole object (ConfigMap or Secret as the API returns it); None when absent.
Objects = Mapping[str, dict[str, Any] | None]
TokenSource = Callable[[str | None, int], str]
FileSet = dict[str, tuple[bytes, int]]


class VolumeError(Exception):
    """A volume cannot be set up yet (missing object, unsupported type); retried."""


@dataclass(frozen=True)
class VolumeInputs:
    pod: dict[str, Any]
    pod_ip: str
    host_ip: str
    configmaps: Objects
    secrets: Objects
    token: TokenSource


def referenced_objects(volumes: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """(ConfigMap names, Secret names) that the pod's volumes read."""
    configmaps: set[str] = set()
    secrets: set[str] = set()
    for volume in volumes:
        if volume.get("configMap"):
            configmaps.add(volume["configMap"]["name"])
        if volume.get("secret"):
            secrets.add(volume["secret"]["secretName"])
        for source in (volume.get("projected") or {}).get("sources") or []:
            if source.get("configMap"):
                configmaps.add(source["configMap"]["name"])
            if source.get("secret"):
                secrets.add(source["secret"]["name"])
    return configmaps, secrets


def _object_data(obj: dict[str, Any], secret: bool) -> dict[str, bytes]:
    if secret:
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def _keyed_files(
    source: dict[str, Any], name: str, kind: str, objects: Objects, default_mode: int
) -> FileSet:
    obj = objects.get(name)
    optional = bool(source.get("optional"))
    if obj is None:
        if optional:
            return {}
        raise VolumeError(f'{kind} "{name}" not found')
    data = _object_data(obj, secret=kind == "secret")
    items = source.get("items")
    if not items:
        return {key: (value, default_mode) for key, value in data.items()}
    files: FileSet = {}
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            raise VolumeError(f'configuration key "{item["key"]}" not found in {kind} "{name}"')
        files[item["path"]] = (data[item["key"]], item.get("mode", default_mode))
    return files


def _downward_files(
    items: list[dict[str, Any]], inputs: VolumeInputs, default_mode: int
) -> FileSet:
    files: FileSet = {}
    try:
        for item in items:
            if item.get("fieldRef"):
                value = pod_field(
                    inputs.pod, item["fieldRef"]["fieldPath"], inputs.pod_ip, inputs.host_ip
                )
            else:
                ref = item["resourceFieldRef"]
                value = resource_field(inputs.pod, ref.get("containerName", ""), ref)
            files[item["path"]] = (value.encode(), item.get("mode", default_mode))
    except (FieldError, KeyError) as e:
        raise VolumeError(f"downwardAPI: {e}") from e
    return files


def _projected_files(volume: dict[str, Any], inputs: VolumeInputs) -> FileSet:
    mode = volume.get("defaultMode", DEFAULT_MODE)
    files: FileSet = {}
    for source in volume.get("sources") or []:
        if source.get("configMap"):
            cm = source["configMap"]
            files.update(_keyed_files(cm, cm["name"], "configmap", inputs.configmaps, mode))
        elif source.get("secret"):
            sec = source["secret"]
            files.update(_keyed_files(sec, sec["name"], "secret", inputs.secrets, mode))
        elif source.get("downwardAPI"):
            files.update(_downward_files(source["downwardAPI"].get("items") or [], inputs, mode))
        elif source.get("serviceAccountToken"):
            sat = source["serviceAccountToken"]
            token = inputs.token(sat.get("audience"), int(sat.get("expirationSeconds", 3600)))
            files[sat["path"]] = (token.encode(), mode)
        else:
            raise VolumeError(f"unsupported projected source {sorted(source)}")
    return files


def volume_files(volume: dict[str, Any], inputs: VolumeInputs) -> FileSet | None:
    """The files of a content volume; None for directory volumes (nothing to write)."""
    if any(k in volume for k in ("emptyDir", "hostPath", "persistentVolumeClaim")):
        return None
    if volume.get("configMap"):
        cm = volume["configMap"]
        mode = cm.get("defaultMode", DEFAULT_MODE)
        return _keyed_files(cm, cm["name"], "configmap", inputs.configmaps, mode)
    if volume.get("secret"):
        sec = volume["secret"]
        mode = sec.get("defaultMode", DEFAULT_MODE)
        return _keyed_files(sec, sec["secretName"], "secret", inputs.secrets, mode)
    if volume.get("downwardAPI"):
        dapi = volume["downwardAPI"]
        return _downward_files(dapi.get("items") or [], inputs, dapi.get("defaultMode", 0o644))
    if volume.get("projected"):
        return _projected_files(volume["projected"], inputs)
    kinds = sorted(k for k in volume if k != "name")
    raise VolumeError(f"volume {volume.get('name')!r}: type {kinds} is not supported locally")


def _current(directory: Path) -> FileSet | None:
    data = directory / "..data"
    if not data.is_symlink():
        return None
    files: FileSet = {}
    for root, _dirs, names in os.walk(data, followlinks=True):
        for name in names:
            path = Path(root) / name
            rel = str(path.relative_to(data))
            files[rel] = (path.read_bytes(), path.stat().st_mode & 0o7777)
    return files


def write_atomic(directory: Path, files: FileSet) -> bool:
    """Make directory hold exactly these files; True when something changed."""
    directory.mkdir(parents=True, exist_ok=True)
    if _current(directory) == files:
        return False
    stamp = directory / f"..{time.time_ns()}"
    for rel, (content, mode) in files.items():
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise VolumeError(f"invalid volume path {rel!r}")
        target = stamp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
    stamp.mkdir(exist_ok=True)
    old = os.readlink(directory / "..data") if (directory / "..data").is_symlink() else None
    tmp = directory / "..data_tmp"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(stamp.name)
    tmp.replace(directory / "..data")
    tops = {Path(rel).parts[0] for rel in files}
    for top in tops:
        link = directory / top
        if not link.is_symlink():
            link.symlink_to(f"..data/{top}")
    for entry in directory.iterdir():
        if not entry.name.startswith("..") and entry.name not in tops:
            entry.unlink()
    if old:
        shutil.rmtree(directory / old, ignore_errors=True)
    return True
