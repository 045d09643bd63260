"""What a measurement found: per-queue task counts and per-pod busy counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """Tasks of one queue (or a sum of queues) by state.

    waiting: in the queue's lists; reserved: delivered to a worker that is not
    running them yet (prefetched, or due but not started); eta: held by a worker
    for a future ETA/countdown; running: executing now.
    """

    waiting: int = 0
    reserved: int = 0
    eta: int = 0
    running: int = 0

    @property
    def backlog(self) -> int:
        """Tasks that need a worker now (ETA tasks are not due yet)."""
        return self.waiting + self.reserved + self.running

    def __add__(self, other: QueueCounts) -> QueueCounts:
        return QueueCounts(
            self.waiting + other.waiting,
            self.reserved + other.reserved,
            self.eta + other.eta,
            self.running + other.running,
        )


def total(counts: Iterable[QueueCounts]) -> QueueCounts:
    out = QueueCounts()
    for c in counts:
        out = out + c
    return out


@dataclass(frozen=True, slots=True)
class PoolMeasurement:
    """One pool's share of one broker round trip; `error` set means nothing was
    measured (the counts are then empty, never zeros to act on)."""

    pool_id: str
    at: float  # wall-clock time of the measurement
    queues: Mapping[str, QueueCounts] = field(default_factory=dict)
    # Executing tasks per pod; None: the pod reported nothing (unknown, not idle).
    pods: Mapping[str, int | None] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def total(self) -> QueueCounts:
        return total(self.queues.values())

    @property
    def busy_pods(self) -> int:
        """Pods executing at least one task."""
        return sum(1 for n in self.pods.values() if n)

    @property
    def unknown_pods(self) -> int:
        return sum(1 for n in self.pods.values() if n is None)

    def status_queues(self) -> list[dict[str, int | str]]:
        """WorkerPoolStatus.queues entries (camelCase field names)."""
        return [
            {
                "name": q,
                "waiting": c.waiting,
                "reserved": c.reserved,
                "eta": c.eta,
                "running": c.running,
            }
            for q, c in self.queues.items()
        ]
