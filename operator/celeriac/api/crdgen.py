"""Turns the pydantic models into CustomResourceDefinitions with structural
OpenAPI v3 schemas: `$ref`s inlined, Optional collapsed (null is pruned by the
API server), JSON-Schema-only keywords translated or dropped."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from .base import GROUP, VERSION
from .kinds import KINDS, Kind

# Keywords a structural schema may carry; anything else pydantic emits is dropped.
_ALLOWED = {
    "type",
    "format",
    "description",
    "default",
    "enum",
    "maximum",
    "minimum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "items",
    "properties",
    "additionalProperties",
    "nullable",
    "anyOf",
}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline `$ref`s and normalise one schema node (recursively)."""
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").split("/")[-1]])
        # Keys on the referring node (description, default) win over the target's.
        node = {
            **target,
            **{k: v for k, v in node.items() if k != "description"},
            **({"description": node["description"]} if "description" in node else {}),
        }
    if "allOf" in node and len(node["allOf"]) == 1:
        inner = node.pop("allOf")[0]
        node = {**_resolve(inner, defs), **node}
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        variants = [v for v in node["anyOf"] if v.get("type") != "null"]
        if len(variants) != 1:
            raise ValueError(f"union types are not structural: {node['anyOf']}")
        outer = {k: v for k, v in node.items() if k != "anyOf"}
        node = {**_resolve(variants[0], defs), **outer}
        if node.get("default", ...) is None:
            node.pop("default")
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        if isinstance(node.get(key), int | float) and not isinstance(node[key], bool):
            node[key.replace("exclusiveM", "m")] = node[key]
            node[key] = True
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {k: _resolve(v, defs) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _resolve(value, defs)
        elif key == "anyOf" or key in _ALLOWED or key.startswith("x-kubernetes-"):
            out[key] = value
    if out.get("additionalProperties") is True:
        raise ValueError("open maps must be marked x-kubernetes-preserve-unknown-fields")
    if out.get("additionalProperties") is False:
        # Structural schemas forbid it beside properties; unknown fields are rejected
        # by the API server's strict field validation instead.
        del out["additionalProperties"]
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def schema_of(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _resolve(raw, defs)  # type: ignore[no-any-return]


def crd_for(kind: Kind) -> dict[str, Any]:
    spec = schema_of(kind.spec)
    status = schema_of(kind.status)
    root = {
        "type": "object",
        "description": kind.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    subresources: dict[str, Any] = {"status": {}}
    if kind.scale:
        subresources["scale"] = dict(kind.scale)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "labels": {"app.kubernetes.io/part-of": "celeriac"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": list(kind.categories),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": subresources,
                    "additionalPrinterColumns": list(kind.columns),
                }
            ],
        },
    }


def all_crds() -> list[dict[str, Any]]:
    return [crd_for(k) for k in KINDS]


HEADER = "# Generated by `celeriac crds` from the pydantic models; do not edit.\n"


def render_files() -> dict[str, str]:
    """File name -> YAML text of every CRD."""
    return {
        f"{c['metadata']['name']}.yaml": HEADER + yaml.safe_dump(c, sort_keys=False, width=100)
        for c in all_crds()
    }


def write(dirs: list[Path]) -> list[Path]:
    written = []
    files = render_files()
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        for stale in d.glob("*.celeriac.io.yaml"):
            if stale.name not in files:
                stale.unlink()
        for name, text in files.items():
            (d / name).write_text(text)
            written.append(d / name)
    return written
