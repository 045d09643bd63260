"""Offline rendering of a set of resources (`celeriac render`), with the same
functions the operator calls."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..api import API_VERSION, WorkflowBrokerSpec
from .broker import BrokerFacts, render_broker
from .meta import Owner

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"


class RenderError(ValueError):
    pass


def owner_of(doc: dict[str, Any], default_namespace: str) -> Owner:
    meta = doc.get("metadata") or {}
    if not meta.get("name"):
        raise RenderError(f"{doc.get('kind')} without metadata.name")
    return Owner(
        kind=doc["kind"],
        name=meta["name"],
        namespace=meta.get("namespace") or default_namespace,
        uid=meta.get("uid") or PLACEHOLDER_UID,
    )


def render_resources(
    docs: Iterable[dict[str, Any]], default_namespace: str
) -> list[dict[str, Any]]:
    """Every object the operator would create for these resources. Objects of other
    kinds (Secrets, ...) are inputs, as the cluster's objects would be."""
    out: list[dict[str, Any]] = []
    for doc in docs:
        if doc.get("apiVersion") != API_VERSION:
            continue
        owner = owner_of(doc, default_namespace)
        if doc["kind"] == "WorkflowBroker":
            spec = WorkflowBrokerSpec.model_validate(doc.get("spec") or {})
            out += render_broker(owner, spec, BrokerFacts())
    return out
