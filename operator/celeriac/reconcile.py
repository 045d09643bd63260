"""Pure reconcile decisions: (spec, observed facts) -> status patch.

The topology and worker controllers build on these; for now a reconcile validates
the spec against the models (rules the API server's schema cannot express),
checks references and records what it saw."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from .api import WorkerPoolSpec, WorkflowBrokerSpec
from .conditions import set_condition


def validation_message(err: ValidationError) -> str:
    """`spec.a.b: message` per problem; never echoes input values (they may be secret)."""
    parts = []
    for e in err.errors(include_url=False, include_input=False):
        path = ".".join(["spec", *(str(p) for p in e["loc"])])
        parts.append(f"{path}: {e['msg']}")
    return "; ".join(parts)


def broker_status(
    spec: Mapping[str, Any], generation: int, status: Mapping[str, Any], now: str
) -> dict[str, Any]:
    conditions = status.get("conditions")
    try:
        parsed = WorkflowBrokerSpec.model_validate(spec)
    except ValidationError as err:
        conditions = set_condition(
            conditions, "Ready", "False", "ConfigInvalid", validation_message(err), generation, now
        )
        return {"observedGeneration": generation, "phase": "Invalid", "conditions": conditions}
    conditions = set_condition(
        conditions,
        "Ready",
        "Unknown",
        "Reconciling",
        f"{parsed.mode} broker accepted; waiting for its topology",
        generation,
        now,
    )
    return {"observedGeneration": generation, "phase": "Pending", "conditions": conditions}


def pool_status(
    spec: Mapping[str, Any],
    generation: int,
    status: Mapping[str, Any],
    broker: Mapping[str, Any] | None,
    now: str,
) -> dict[str, Any]:
    """`broker` is the referenced WorkflowBroker as read from the API (None: missing)."""
    conditions = status.get("conditions")

    def result(phase: str, ready: str, reason: str, message: str) -> dict[str, Any]:
        conds = set_condition(conditions, "Ready", ready, reason, message, generation, now)
        return {"observedGeneration": generation, "phase": phase, "conditions": conds}

    try:
        parsed = WorkerPoolSpec.model_validate(spec)
    except ValidationError as err:
        return result("Invalid", "False", "ConfigInvalid", validation_message(err))
    name = parsed.broker_ref.name
    if broker is None:
        return result("Pending", "False", "BrokerNotFound", f"WorkflowBroker {name} not found")
    ready = next(
        (c for c in broker.get("status", {}).get("conditions") or [] if c.get("type") == "Ready"),
        None,
    )
    if not ready or ready.get("status") != "True":
        return result("Pending", "False", "BrokerNotReady", f"WorkflowBroker {name} is not Ready")
    return result("Pending", "Unknown", "Reconciling", f"broker {name} is Ready")
