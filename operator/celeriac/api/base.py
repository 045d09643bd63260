"""Building blocks shared by both kinds: camelCase models, Kubernetes pass-through
types, references, conditions and pod placement knobs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

GROUP = "celeriac.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
QUANTITY = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One CEL rule for `x-kubernetes-validations`; the message names the field."""
    out: JsonDict = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


def immutable(field: str) -> JsonDict:
    return {"x-kubernetes-validations": [cel("self == oldSelf", f"{field} is immutable")]}


_MODEL_CONFIG = ConfigDict(
    alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
)


def with_rules(*rules: JsonDict) -> ConfigDict:
    """Model config carrying object-level CEL rules (cross-field validation)."""
    return ConfigDict(**_MODEL_CONFIG, json_schema_extra={"x-kubernetes-validations": list(rules)})


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are an error."""

    model_config = _MODEL_CONFIG


# A Kubernetes resource quantity ("500m", "1Gi", 2): int-or-string as the API server wants it.
Quantity = Annotated[
    int | str,
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY,
        }
    ),
]

# Core Kubernetes types passed through verbatim to pod specs; the API server of the
# cluster validates them again when the pod template is applied.
KubeObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
KubeObjectList = Annotated[
    list[dict[str, Any]],
    WithJsonSchema(
        {
            "type": "array",
            "maxItems": 64,
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        }
    ),
]
Name = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
StringMap = Annotated[dict[str, Annotated[str, Field(max_length=4096)]], Field(max_length=64)]


class LocalObjectReference(Model):
    """A reference to an object in the same namespace."""

    name: Name = Field(description="Name of the object in the same namespace.")


class SecretKeySelector(Model):
    """A key of a Secret in the same namespace."""

    name: Name = Field(description="Name of the Secret in the same namespace.")
    key: str = Field("password", min_length=1, max_length=253, description="Key inside the Secret.")


class ResourceRequirements(Model):
    """Compute resources of a container, as in a Pod spec."""

    requests: dict[str, Quantity] | None = Field(
        None, max_length=16, description="Minimum resources, e.g. {cpu: 100m, memory: 128Mi}."
    )
    limits: dict[str, Quantity] | None = Field(
        None, max_length=16, description="Maximum resources, e.g. {cpu: '1', memory: 512Mi}."
    )


class DisruptionBudget(Model):
    """PodDisruptionBudget for the pods of this component."""

    enabled: bool = Field(True, description="Create a PodDisruptionBudget.")
    max_unavailable: int = Field(
        1, ge=0, le=100, description="Pods that voluntary disruptions may take down at once."
    )


class PodSettings(Model):
    """Where and how the pods run; passed through to the pod template."""

    affinity: KubeObject | None = Field(
        None,
        description="Pod affinity (core/v1 Affinity). Replaces the default soft anti-affinity.",
    )
    tolerations: KubeObjectList | None = Field(None, description="Tolerations (core/v1).")
    node_selector: StringMap | None = Field(None, description="Node labels the pods must match.")
    topology_spread_constraints: KubeObjectList | None = Field(
        None, description="Topology spread constraints (core/v1)."
    )
    priority_class_name: str | None = Field(
        None, max_length=253, description="PriorityClass of the pods."
    )
    service_account_name: str | None = Field(
        None, max_length=253, description="ServiceAccount the pods run as."
    )
    annotations: StringMap | None = Field(None, description="Extra pod annotations.")
    labels: StringMap | None = Field(None, description="Extra pod labels.")
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        None, max_length=16, description="Secrets for pulling the image."
    )
    disruption_budget: DisruptionBudget = Field(
        default_factory=DisruptionBudget,
        description="PodDisruptionBudget (on by default, one pod at a time).",
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Model):
    """The state of one aspect of the resource, as in Kubernetes' metav1.Condition."""

    type: str = Field(max_length=316, description="Condition type: Ready, Progressing, Degraded...")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field("", max_length=1024, description="CamelCase reason for the last change.")
    message: str = Field("", max_length=32768, description="Human-readable details.")
    last_transition_time: str | None = Field(
        None, description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation the condition was computed from."
    )


class CommonStatus(Model):
    """Fields every kind's status carries."""

    observed_generation: int | None = Field(
        None, description="The metadata.generation the operator last acted on."
    )
    phase: str | None = Field(None, description="One-word summary of the state.")
    conditions: list[Condition] | None = Field(
        None,
        description="Ready, Progressing and Degraded conditions with reasons.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
