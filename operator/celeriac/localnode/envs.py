"""A container's environment from env and envFrom (development and tests only).

Pure: the caller fetches the ConfigMaps and Secrets (see `referenced_objects`)
and passes their data in, Secret values already decoded. The rules follow the
kubelet: envFrom first, then env in order, each `value` expanded against the
variables defined before it; a later definition wins; optional references to
missing objects or keys are skipped. Service links (FOO_SERVICE_HOST ...) are
not injected: the local node has no Service IPs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .expand import expand, mapping_for
from .fields import FieldError, pod_field, resource_field

# name -> data; None when the object does not exist.
ObjectData = Mapping[str, Mapping[str, str] | None]


class EnvError(Exception):
    """The environment cannot be built; the container waits with this reason."""

    reason = "CreateContainerConfigError"


@dataclass(frozen=True)
class PodContext:
    pod: dict[str, Any]
    pod_ip: str
    host_ip: str


def referenced_objects(container: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(ConfigMap names, Secret names) that a container's env and envFrom read."""
    configmaps: set[str] = set()
    secrets: set[str] = set()
    for source in container.get("envFrom") or []:
        if source.get("configMapRef"):
            configmaps.add(source["configMapRef"]["name"])
        if source.get("secretRef"):
            secrets.add(source["secretRef"]["name"])
    for var in container.get("env") or []:
        value_from = var.get("valueFrom") or {}
        if value_from.get("configMapKeyRef"):
            configmaps.add(value_from["configMapKeyRef"]["name"])
        if value_from.get("secretKeyRef"):
            secrets.add(value_from["secretKeyRef"]["name"])
    return configmaps, secrets


def _valid_name(name: str) -> bool:
    # RelaxedEnvironmentVariableValidation: any printable ASCII except "=".
    return bool(name) and "=" not in name and all(32 <= ord(c) < 127 for c in name)


def _from_source(
    source: dict[str, Any], namespace: str, configmaps: ObjectData, secrets: ObjectData
) -> dict[str, str]:
    if source.get("configMapRef"):
        ref, kind, objects = source["configMapRef"], "configmap", configmaps
    elif source.get("secretRef"):
        ref, kind, objects = source["secretRef"], "secret", secrets
    else:
        return {}
    data = objects.get(ref["name"])
    if data is None:
        if ref.get("optional"):
            return {}
        raise EnvError(f'{kind} "{ref["name"]}" not found')
    prefix = source.get("prefix") or ""
    # Invalid names are skipped, as the kubelet does (it records an event).
    return {prefix + k: v for k, v in data.items() if _valid_name(prefix + k)}


def _key_ref(ref: dict[str, Any], kind: str, namespace: str, objects: ObjectData) -> str | None:
    data = objects.get(ref["name"])
    optional = bool(ref.get("optional"))
    if data is None:
        if optional:
            return None
        raise EnvError(f'{kind} "{ref["name"]}" not found')
    if ref["key"] not in data:
        if optional:
            return None
        raise EnvError(f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}")
    return data[ref["key"]]


def container_env(
    ctx: PodContext,
    container: dict[str, Any],
    configmaps: ObjectData,
    secrets: ObjectData,
) -> dict[str, str]:
    """The variables Kubernetes defines for this container (image env not included)."""
    namespace = ctx.pod.get("metadata", {}).get("namespace", "")
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        env.update(_from_source(source, namespace, configmaps, secrets))
    for var in container.get("env") or []:
        name = var["name"]
        value: str = var.get("value") or ""
        value_from = var.get("valueFrom")
        if value:
            value = expand(value, mapping_for(env))
        elif value_from:
            found = _value_from(ctx, container, value_from, namespace, configmaps, secrets)
            if found is None:
                continue
            value = found
        env[name] = value
    return env


def _value_from(
    ctx: PodContext,
    container: dict[str, Any],
    value_from: dict[str, Any],
    namespace: str,
    configmaps: ObjectData,
    secrets: ObjectData,
) -> str | None:
    try:
        if value_from.get("fieldRef"):
            return pod_field(ctx.pod, value_from["fieldRef"]["fieldPath"], ctx.pod_ip, ctx.host_ip)
        if value_from.get("resourceFieldRef"):
            return resource_field(ctx.pod, container["name"], value_from["resourceFieldRef"])
    except FieldError as e:
        raise EnvError(str(e)) from e
    if value_from.get("configMapKeyRef"):
        return _key_ref(value_from["configMapKeyRef"], "configmap", namespace, configmaps)
    if value_from.get("secretKeyRef"):
        return _key_ref(value_from["secretKeyRef"], "secret", namespace, secrets)
    raise EnvError(f"unsupported valueFrom {sorted(value_from)}")
