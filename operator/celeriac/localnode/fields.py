"""Downward API values: pod fields and container resources (development and tests only).

Shared by environment variables and downwardAPI volumes of the local node; the
formats follow the kubelet (labels and annotations in volumes are `key="value"`
lines sorted by key; resources are rounded up to a whole multiple of the divisor).
"""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction
from typing import Any

# What the local node reports as allocatable; limits that are not set default to it.
NODE_ALLOCATABLE = {"cpu": "8", "memory": "16Gi", "ephemeral-storage": "100Gi", "pods": "110"}

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[a-zA-Z]*)$")
_SUFFIX: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}
_LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class FieldError(ValueError):
    """A fieldRef or resourceFieldRef the local node cannot resolve."""


def parse_quantity(text: str | int | float) -> Fraction:
    """A Kubernetes resource quantity ("100m", "1.5Gi", "2e3") as an exact number."""
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise FieldError(f"invalid quantity {text!r}")
    number, suffix = match.groups()
    value = Fraction(number)
    if suffix[:1] in ("e", "E"):
        return value * Fraction(10) ** int(suffix[1:])
    if suffix not in _SUFFIX:
        raise FieldError(f"invalid quantity suffix in {text!r}")
    return value * _SUFFIX[suffix]


def _go_quote(value: str) -> str:
    # strconv.Quote and JSON agree for the printable text labels hold.
    return json.dumps(value, ensure_ascii=False)


def format_map(values: dict[str, str]) -> str:
    """metadata.labels / annotations in a downwardAPI file: sorted `k="v"` lines."""
    return "\n".join(f"{k}={_go_quote(v)}" for k, v in sorted(values.items()))


def pod_field(pod: dict[str, Any], path: str, pod_ip: str, host_ip: str) -> str:
    """The value of a fieldRef.fieldPath for this pod."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    match = _LABEL_REF.match(path)
    if match:
        kind, key = match.groups()
        return str((meta.get(kind) or {}).get(key, ""))
    simple: dict[str, Any] = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return str(simple[path])
    if path in ("metadata.labels", "metadata.annotations"):
        return format_map(meta.get(path.split(".")[1]) or {})
    raise FieldError(f"unsupported fieldPath {path!r}")


def resource_field(pod: dict[str, Any], default_container: str, ref: dict[str, Any]) -> str:
    """The value of a resourceFieldRef, rounded up to a multiple of its divisor."""
    name = ref.get("containerName") or default_container
    containers = pod.get("spec", {}).get("containers", []) + pod.get("spec", {}).get(
        "initContainers", []
    )
    container = next((c for c in containers if c.get("name") == name), None)
    if container is None:
        raise FieldError(f"resourceFieldRef names unknown container {name!r}")
    resource = str(ref.get("resource", ""))
    kind, _, res = resource.partition(".")
    if kind not in ("limits", "requests") or res not in ("cpu", "memory", "ephemeral-storage"):
        raise FieldError(f"unsupported resource {resource!r}")
    values = (container.get("resources") or {}).get(kind) or {}
    if res in values:
        amount = parse_quantity(values[res])
    elif kind == "limits":
        amount = parse_quantity(NODE_ALLOCATABLE[res])
    else:
        amount = Fraction(0)
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor <= 0:
        raise FieldError(f"divisor of {resource!r} must be positive")
    if res == "cpu":
        # The kubelet divides millicores by milli-divisors (so "1m" is the finest step).
        millis = math.ceil(amount * 1000)
        return str(math.ceil(Fraction(millis) / math.ceil(divisor * 1000)))
    return str(math.ceil(math.ceil(amount) / math.ceil(divisor)))
