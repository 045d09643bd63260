"""The custom resource kinds: names, printer columns and subresources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import GROUP, Model
from .broker import WorkflowBrokerSpec, WorkflowBrokerStatus
from .pool import WorkerPoolSpec, WorkerPoolStatus


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[Model]
    status: type[Model]
    description: str
    columns: tuple[dict[str, Any], ...]
    scale: dict[str, str] | None = None
    categories: tuple[str, ...] = field(default=("celeriac",))

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def _col(
    name: str, path: str, type_: str = "string", priority: int = 0, **kw: str
) -> dict[str, Any]:
    col: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path, **kw}
    if priority:
        col["priority"] = priority
    return col


_READY = '.status.conditions[?(@.type=="Ready")].status'
_AGE = _col("Age", ".metadata.creationTimestamp", "date")

WORKFLOW_BROKER = Kind(
    kind="WorkflowBroker",
    plural="workflowbrokers",
    short_names=("wfb",),
    spec=WorkflowBrokerSpec,
    status=WorkflowBrokerStatus,
    description="A Redis broker for Celery: standalone, with replicas and Sentinels, or external.",
    columns=(
        _col("Mode", ".spec.mode"),
        _col("Master", ".status.master.pod"),
        _col("Ready", _READY),
        _col("Phase", ".status.phase", priority=1),
        _col("Failovers", ".status.failovers.count", "integer", priority=1),
        _AGE,
    ),
)

WORKER_POOL = Kind(
    kind="WorkerPool",
    plural="workerpools",
    short_names=("wp",),
    spec=WorkerPoolSpec,
    status=WorkerPoolStatus,
    description="A pool of Celery or PyWorkflow workers wired to a WorkflowBroker.",
    columns=(
        _col("Broker", ".spec.brokerRef.name"),
        _col("Replicas", ".status.replicas", "integer"),
        _col("Ready", ".status.readyReplicas", "integer"),
        _col("Desired", ".status.desiredReplicas", "integer"),
        _col("Backlog", ".status.backlog", "integer", description="waiting + reserved + running"),
        _col("Runtime", ".spec.runtime", priority=1),
        _AGE,
    ),
    scale={
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    },
)

KINDS: tuple[Kind, ...] = (WORKFLOW_BROKER, WORKER_POOL)
