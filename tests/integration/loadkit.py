"""A steady Celery publish load through Sentinel, and a watch on the master, for
tests and benchmarks of planned failovers (no acknowledged task or result lost)."""

from __future__ import annotations

import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery
from redis.sentinel import Sentinel


def producer_app(connection: dict[str, Any], password: str, results: bool = True) -> Celery:
    """A Celery client configured from a broker's published connection info.
    Without `results` it only publishes: Celery's Redis backend otherwise
    subscribes to every sent task's result channel on one connection that nobody
    reads until the end, and a long load stalls on that socket."""

    def with_password(url: str) -> str:
        return url.replace("sentinel://", f"sentinel://:{password}@")

    options = {"master_name": connection["masterName"], "sentinel_kwargs": {"password": password}}
    app = Celery("producer")
    app.conf.update(
        broker_url=with_password(connection["brokerURL"]),
        result_backend=with_password(connection["resultBackendURL"]) if results else None,
        broker_transport_options=options,
        result_backend_transport_options=options,
        broker_connection_retry_on_startup=True,
    )
    return app


@dataclass
class Load:
    """Publishes `wrongapp.add(i, 0)` every `interval` seconds until stopped."""

    app: Celery  # publishes (without a result backend)
    results: Celery  # reads the results
    interval: float = 0.02
    sent: dict[int, str] = field(default_factory=dict)  # i -> task id, once acknowledged
    errors: int = 0
    longest_gap: float = 0.0  # longest time between two acknowledged publishes
    gap_at: float = 0.0  # monotonic time the longest gap began
    stall: str = ""  # where the publisher stood the first time one publish took > 10 s
    _since: float | None = None  # monotonic start of the publish in flight
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        threading.Thread(target=self._watch_stall, daemon=True).start()

    def _watch_stall(self) -> None:
        while not self._stop.wait(1) and not self.stall:
            since, thread = self._since, self._thread
            if since is not None and time.monotonic() - since > 10 and thread is not None:
                frame = sys._current_frames().get(thread.ident or 0)
                self.stall = "".join(traceback.format_stack(frame)[-8:]) if frame else "?"

    def _run(self) -> None:
        i, last = 0, time.monotonic()
        retry = {"max_retries": None, "interval_start": 0, "interval_step": 0.2}
        while not self._stop.is_set():
            self._since = time.monotonic()
            try:
                result = self.app.send_task("wrongapp.add", (i, 0), retry=True, retry_policy=retry)
            except Exception:
                self.errors += 1
                continue
            finally:
                self._since = None
            now = time.monotonic()
            if now - last > self.longest_gap:
                self.longest_gap, self.gap_at = now - last, last
            self.sent[i], last, i = result.id, now, i + 1
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(30)

    def lost(self, timeout: float = 120) -> tuple[list[int], list[int]]:
        """(tasks never run, results wrong or missing) among acknowledged publishes."""
        deadline = time.monotonic() + timeout
        never, wrong = [], []
        for i, task_id in self.sent.items():
            res = self.results.AsyncResult(task_id)
            try:
                value = res.get(timeout=max(1.0, deadline - time.monotonic()))
            except Exception:
                never.append(i)
                continue
            if value != i:
                wrong.append(i)
        return never, wrong


@dataclass
class MasterWatch:
    """Samples, every `interval` seconds, whether a writable master answers at the
    address the Sentinels give; records the longest stretch without one."""

    sentinels: list[tuple[str, int]]
    master_name: str
    password: str
    interval: float = 0.05
    longest_gap: float = 0.0
    masters: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _writable(self, s: Sentinel) -> str | None:
        try:
            host, port = s.discover_master(self.master_name)
            with redis.Redis(host=host, port=port, password=self.password, socket_timeout=0.5) as r:
                role = r.execute_command("ROLE")
                return str(host) if role[0] in (b"master", "master") else None
        except (redis.RedisError, OSError):
            return None

    def _run(self) -> None:
        s = Sentinel(
            self.sentinels, sentinel_kwargs={"password": self.password}, socket_timeout=0.5
        )
        down_since: float | None = None
        while not self._stop.is_set():
            master, now = self._writable(s), time.monotonic()
            if master is None:
                down_since = down_since or now
                self.longest_gap = max(self.longest_gap, now - down_since)
            else:
                down_since = None
                if not self.masters or self.masters[-1] != master:
                    self.masters.append(master)
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)
