"""Offline rendering of a set of resources (`celeriac render`), with the same
functions the operator calls."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..api import API_VERSION, WorkerPoolSpec, WorkflowBrokerSpec
from .broker import BrokerFacts, render_broker
from .meta import Owner
from .pool import PoolBroker, PoolFacts, render_pool

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
    ours = [d for d in docs if d.get("apiVersion") == API_VERSION]
    brokers = {
        (owner_of(d, default_namespace).namespace, d["metadata"]["name"]): PoolBroker(
            d["metadata"]["name"], WorkflowBrokerSpec.model_validate(d.get("spec") or {})
        )
        for d in ours
        if d["kind"] == "WorkflowBroker"
    }
    out: list[dict[str, Any]] = []
    for doc in ours:
        owner = owner_of(doc, default_namespace)
        if doc["kind"] == "WorkflowBroker":
            out += render_broker(owner, brokers[(owner.namespace, owner.name)].spec, BrokerFacts())
        elif doc["kind"] == "WorkerPool":
            spec = WorkerPoolSpec.model_validate(doc.get("spec") or {})
            out += render_pool(owner, spec, _pool_facts(owner, spec, brokers))
    return out


def _pool_facts(
    owner: Owner, spec: WorkerPoolSpec, brokers: dict[tuple[str, str], PoolBroker]
) -> PoolFacts:
    def find(name: str) -> PoolBroker:
        found = brokers.get((owner.namespace, name))
        if found is None:
            raise RenderError(
                f"WorkerPool {owner.name}: WorkflowBroker {name} is not among the inputs"
            )
        return found

    results = None
    if spec.result_backend.type == "broker":
        results = find((spec.result_backend.broker_ref or spec.broker_ref).name)
    auto = spec.autoscaling
    replicas = auto.min_replicas if auto and auto.enabled else spec.replicas
    return PoolFacts(find(spec.broker_ref.name), results, replicas)
