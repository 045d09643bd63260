"""Busy reporter: a Celery worker tells the autoscaler what it holds.

Shipped verbatim into worker pods (where the celeriac package is not installed),
so it imports only the standard library and Celery. `install(app, key)` starts,
once the worker is ready, a daemon thread in the worker's main process that
every `interval` seconds SETs `key` (expiring after `ttl`) through the app's own
broker connection: Sentinel, TLS, passwords and `global_keyprefix` apply as for
the worker itself. The value is compact JSON:

    {"v": 1, "t": <unix time>, "q": {"<routing key>": [running, running_unacked,
                                                       reserved, eta]}}

- running: requests executing now (celery.worker.state.active_requests);
- running_unacked: those of them not acknowledged yet (acks_late): they are
  still in the broker's `unacked` hash, so the autoscaler must not count them
  twice;
- reserved: prefetched requests waiting for a pool slot (reserved, not active);
- eta: requests held for a future ETA/countdown (state.scheduled_requests,
  Celery 5.7+; always 0 on older Celery).

A pod whose key is missing (not started, crashed, broker unreachable for `ttl`)
is unknown to the autoscaler, never idle.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

FORMAT_VERSION = 1
RUNNING, RUNNING_UNACKED, RESERVED, ETA = range(4)

log = logging.getLogger("celeriac.busy")


def _routing_key(request: Any) -> str:
    info = getattr(request, "delivery_info", None) or {}
    return str(info.get("routing_key") or "")


def _copy(requests: Iterable[Any]) -> list[Any]:
    # The worker's WeakSets change under us (the consumer runs in another thread).
    for _ in range(5):
        try:
            return list(requests)
        except RuntimeError:  # "Set changed size during iteration"
            continue
    raise RuntimeError("worker state kept changing while being read")


def snapshot(
    active: Iterable[Any], reserved: Iterable[Any], scheduled: Iterable[Any]
) -> dict[str, list[int]]:
    """Per routing key: [running, running_unacked, reserved, eta]."""
    out: dict[str, list[int]] = {}

    def row(request: Any) -> list[int]:
        return out.setdefault(_routing_key(request), [0, 0, 0, 0])

    running = _copy(active)
    running_ids = {id(r) for r in running}
    for r in running:
        counts = row(r)
        counts[RUNNING] += 1
        if not getattr(r, "acknowledged", False):
            counts[RUNNING_UNACKED] += 1
    for r in _copy(reserved):  # reserved_requests also holds the active ones
        if id(r) not in running_ids:
            row(r)[RESERVED] += 1
    for r in _copy(scheduled):
        row(r)[ETA] += 1
    return out


def encode(counts: dict[str, list[int]], now: float) -> str:
    return json.dumps({"v": FORMAT_VERSION, "t": round(now, 3), "q": counts}, separators=(",", ":"))


def decode(raw: bytes | str) -> dict[str, tuple[int, int, int, int]]:
    """Per routing key (running, running_unacked, reserved, eta); ValueError when
    `raw` is not a report this module wrote."""
    data = json.loads(raw)
    if not isinstance(data, dict) or data.get("v") != FORMAT_VERSION:
        raise ValueError(f"not a version {FORMAT_VERSION} busy report")
    out: dict[str, tuple[int, int, int, int]] = {}
    for rk, c in dict(data["q"]).items():
        out[str(rk)] = (int(c[0]), int(c[1]), int(c[2]), int(c[3]))
    return out


def worker_snapshot() -> dict[str, list[int]]:
    """What this worker process holds now (call in the worker's main process)."""
    from celery.worker import state

    return snapshot(
        state.active_requests, state.reserved_requests, getattr(state, "scheduled_requests", ())
    )


class Reporter:
    """The reporting thread; `start`/`stop` take Celery signal arguments."""

    def __init__(self, app: Any, key: str, interval: float = 1.0, ttl: float = 15.0) -> None:
        if ttl <= interval:
            raise ValueError("ttl must exceed interval, or the key expires between writes")
        self.app, self.key, self.interval, self.ttl = app, key, interval, ttl
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._failing = False

    def start(self, **_: Any) -> None:
        # worker_ready comes again after the consumer restarts (lost broker).
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="celeriac-busy", daemon=True)
        self._thread.start()

    def stop(self, **_: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        if self._conn is not None:  # the pod is going away: it holds nothing any more
            with contextlib.suppress(Exception):
                self._client().delete(self.key)
        self._drop()

    def _client(self) -> Any:
        if self._conn is None:
            conn = self.app.connection_for_write()
            conn.ensure_connection(max_retries=1)
            self._conn = conn
        return self._conn.default_channel.client

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.release()

    def write_once(self) -> None:
        payload = encode(worker_snapshot(), time.time())
        self._client().set(self.key, payload, px=int(self.ttl * 1000))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.write_once()
                if self._failing:
                    log.info("busy report to %s works again", self.key)
                self._failing = False
            except Exception as e:  # never take the worker down; retry next time
                if not self._failing:
                    log.warning("busy report to %s failed: %s: %s", self.key, type(e).__name__, e)
                self._failing = True
                self._drop()
            self._stop.wait(self.interval)


def install(app: Any, key: str, interval: float = 1.0, ttl: float = 15.0) -> Reporter:
    """Report under `key` from the worker's main process once it is ready."""
    from celery.signals import worker_ready, worker_shutdown

    reporter = Reporter(app, key, interval, ttl)
    worker_ready.connect(reporter.start, weak=False)
    worker_shutdown.connect(reporter.stop, weak=False)
    return reporter
