"""Redis key names as kombu's Redis transport builds them (kombu/transport/redis.py),
plus the keys celeriac and PyWorkflow workers write about themselves.

- A queue is the list `<queue>`; messages with a priority go to the list of the
  highest priority step not above it: `<queue><sep><step>`, step 0 unsuffixed.
- `global_keyprefix` is prepended by kombu's client to every key it touches
  (queue lists, `unacked`, `unacked_index`, ... and anything a worker SETs through
  the broker channel's client, such as the busy report).
- Prefetched and (with acks_late) running messages sit in the hash `unacked_key`.
"""

from __future__ import annotations

from bisect import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_SEP = "\x06\x16"
DEFAULT_PRIORITY_STEPS = (0, 3, 6, 9)
MIN_PRIORITY, MAX_PRIORITY = 0, 9  # kombu's virtual transport clamps to these
BUSY_KEY_PREFIX = "celeriac:busy:"
PYWORKFLOW_INFLIGHT_PREFIX = "pyworkflow:inflight:"


@dataclass(frozen=True, slots=True)
class KeyOptions:
    """The kombu Redis transport options that change key names."""

    global_keyprefix: str = ""
    sep: str = DEFAULT_SEP
    priority_steps: tuple[int, ...] = DEFAULT_PRIORITY_STEPS
    unacked_key: str = "unacked"
    unacked_index_key: str = "unacked_index"

    @classmethod
    def from_transport_options(cls, options: Mapping[str, Any] | None) -> KeyOptions:
        """From `broker_transport_options`; other options are ignored."""
        o = options or {}
        return cls(
            global_keyprefix=str(o.get("global_keyprefix") or ""),
            sep=str(o.get("sep", DEFAULT_SEP)),
            priority_steps=tuple(int(s) for s in o.get("priority_steps", DEFAULT_PRIORITY_STEPS)),
            unacked_key=str(o.get("unacked_key", "unacked")),
            unacked_index_key=str(o.get("unacked_index_key", "unacked_index")),
        )

    def key(self, name: str) -> str:
        """A key as it is stored in Redis (kombu prefixes `str(key)`)."""
        return self.global_keyprefix + name

    def step(self, priority: int) -> int:
        """kombu's Channel.priority(): the highest step not above `priority`."""
        return self.priority_steps[bisect(self.priority_steps, priority) - 1]

    def _list(self, queue: str, priority: int) -> str:
        step = self.step(priority)
        return self.key(f"{queue}{self.sep}{step}" if step else queue)

    def list_for_priority(self, queue: str, priority: int) -> str:
        """The stored list a message of `priority` is LPUSHed to."""
        return self._list(queue, max(min(priority, MAX_PRIORITY), MIN_PRIORITY))

    def queue_lists(self, queue: str) -> tuple[str, ...]:
        """Every stored list of `queue`, in the order workers consume them."""
        return tuple(dict.fromkeys(self._list(queue, p) for p in self.priority_steps))

    @property
    def unacked(self) -> str:
        return self.key(self.unacked_key)

    @property
    def unacked_index(self) -> str:
        return self.key(self.unacked_index_key)


def queue_lists(queues: Iterable[str], options: KeyOptions = KeyOptions()) -> tuple[str, ...]:
    """The stored lists of several queues, without duplicates."""
    return tuple(dict.fromkeys(k for q in queues for k in options.queue_lists(q)))


def busy_key(namespace: str, pool: str, pod: str) -> str:
    """Where a worker pod's busy reporter writes (before `global_keyprefix`, which
    the broker channel's client adds)."""
    return f"{BUSY_KEY_PREFIX}{namespace}/{pool}/{pod}"


def inflight_key(hostname: str) -> str:
    """PyWorkflow's in-flight hash of one worker pod: `HOSTNAME` (the pod name) or
    socket.gethostname(); written with a plain redis client, so never prefixed."""
    return f"{PYWORKFLOW_INFLIGHT_PREFIX}{hostname}"
