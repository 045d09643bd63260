"""A short-lived cache of API reads shared by the pool reconciles: the pools of
one namespace (and one broker) read their broker, its Secrets, the Deployments
and the worker pods once per window instead of once each."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")
TTL_SECONDS = 2.0

_lock = threading.Lock()
_entries: dict[Hashable, tuple[float, Any]] = {}


def cached(key: Hashable, read: Callable[[], T], ttl: float = TTL_SECONDS) -> T:
    """`read()`'s result, reused for `ttl` seconds (errors are not cached)."""
    now = time.monotonic()
    with _lock:
        hit = _entries.get(key)
        if hit is not None and now - hit[0] < ttl:
            value: T = hit[1]
            return value
    value = read()
    with _lock:
        _entries[key] = (now, value)
        if len(_entries) > 10_000:  # drop what expired; keys come and go with objects
            for k in [k for k, (at, _) in _entries.items() if now - at >= ttl]:
                del _entries[k]
    return value


def forget(key: Hashable) -> None:
    with _lock:
        _entries.pop(key, None)
