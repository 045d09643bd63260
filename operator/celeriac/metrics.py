"""Prometheus metrics of the operator, served on `celeriac run --metrics-port`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter(
    "celeriac_reconciles_total", "Reconciles by kind and outcome.", ["kind", "outcome"]
)
QUEUE_TASKS = Gauge(
    "celeriac_queue_tasks",
    "Tasks per WorkerPool queue and state (waiting, reserved, eta, running).",
    ["namespace", "pool", "queue", "state"],
)
POOL_REPLICAS = Gauge(
    "celeriac_pool_replicas",
    "WorkerPool replicas (desired, actual).",
    ["namespace", "pool", "kind"],
)
POLL_SECONDS = Histogram(
    "celeriac_broker_poll_seconds",
    "Duration of one backlog measurement round trip to a broker.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BROKER_ERRORS = Counter(
    "celeriac_broker_errors_total", "Failed backlog measurements.", ["namespace", "broker"]
)
POLL_SKIPPED = Counter(
    "celeriac_broker_poll_skipped_total",
    "Backlog measurements skipped because the broker's previous one had not finished.",
    ["namespace", "broker"],
)


@contextmanager
def counted(kind: str) -> Iterator[None]:
    """Count one reconcile of `kind` by outcome (ok, error)."""
    try:
        yield
    except Exception:
        RECONCILES.labels(kind, "error").inc()
        raise
    RECONCILES.labels(kind, "ok").inc()


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve /metrics from a background thread."""
    start_http_server(port, addr=address)
