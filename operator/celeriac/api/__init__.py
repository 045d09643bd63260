"""The celeriac API (group celeriac.io, version v1alpha1): pydantic models are the
single source of truth; the CRDs are generated from them."""

from .base import API_VERSION, GROUP, VERSION
from .broker import WorkflowBrokerSpec, WorkflowBrokerStatus
from .kinds import KINDS, WORKER_POOL, WORKFLOW_BROKER, Kind
from .pool import WorkerPoolSpec, WorkerPoolStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "WORKER_POOL",
    "WORKFLOW_BROKER",
    "Kind",
    "WorkerPoolSpec",
    "WorkerPoolStatus",
    "WorkflowBrokerSpec",
    "WorkflowBrokerStatus",
]
