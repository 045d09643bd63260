"""Measure every registered pool, one pipelined round trip per broker and tick.

Pools are due every `interval` seconds on a shared grid (multiples of the
interval on the monotonic clock), so pools of one broker with the same interval
share a round trip. Brokers are measured concurrently on a small thread pool; a
broker whose previous measurement has not finished is skipped for that tick
(a slow broker never piles up threads). Results go to `on_result(broker_id,
{pool_id: PoolMeasurement})`, called on a pool thread: it must be thread-safe
(e.g. hand over with loop.call_soon_threadsafe) and may see a pool that was just
unregistered.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis

from .. import metrics
from .counts import PoolMeasurement
from .measure import BrokerAddress, Plan, PoolQuery, connect, plan, run

log = logging.getLogger(__name__)

OnResult = Callable[[str, Mapping[str, PoolMeasurement]], None]


@dataclass(frozen=True, slots=True)
class Registration:
    pool: PoolQuery
    broker_id: str  # "<namespace>/<name>" of the WorkflowBroker
    address: BrokerAddress
    interval: float = 5.0


@dataclass(slots=True)
class _Broker:
    broker_id: str
    address: BrokerAddress
    client: redis.Redis | None = None
    pools: dict[str, Registration] = field(default_factory=dict)
    next_due: dict[str, float] = field(default_factory=dict)
    plans: dict[tuple[str, ...], Plan] = field(default_factory=dict)
    busy: bool = False

    def labels(self) -> tuple[str, str]:
        ns, _, name = self.broker_id.rpartition("/")
        return ns, name


class Poller:
    def __init__(
        self,
        on_result: OnResult,
        *,
        tick: float = 1.0,
        workers: int = 8,
        timeout: float = 2.0,
        connector: Callable[[BrokerAddress, float], redis.Redis] = connect,
    ) -> None:
        self.on_result, self.tick, self.timeout = on_result, tick, timeout
        self._connect = connector
        self._brokers: dict[str, _Broker] = {}
        self._broker_of: dict[str, str] = {}  # pool id -> broker id
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- registrations ------------------------------------------------------------
    def register(self, reg: Registration) -> None:
        """Add a pool or replace its registration (queues, pods, address...)."""
        pid = reg.pool.pool_id
        with self._lock:
            if self._broker_of.get(pid, reg.broker_id) != reg.broker_id:
                self._remove(pid)
            b = self._brokers.get(reg.broker_id)
            if b is None:
                b = self._brokers[reg.broker_id] = _Broker(reg.broker_id, reg.address)
            elif b.address != reg.address:  # e.g. a new password: reconnect
                self._close(b)
                b.address = reg.address
            old = b.pools.get(pid)
            b.pools[pid] = reg
            self._broker_of[pid] = reg.broker_id
            if old is None or old.interval != reg.interval:
                b.next_due[pid] = 0.0  # measure on the next tick
            if old != reg:
                b.plans.clear()

    def unregister(self, pool_id: str) -> None:
        with self._lock:
            self._remove(pool_id)

    def _remove(self, pid: str) -> None:
        bid = self._broker_of.pop(pid, None)
        b = self._brokers.get(bid or "")
        if b is None:
            return
        b.pools.pop(pid, None)
        b.next_due.pop(pid, None)
        b.plans.clear()
        if not b.pools:
            del self._brokers[b.broker_id]
            if not b.busy:  # else the measuring thread still uses the client
                self._close(b)

    @staticmethod
    def _close(b: _Broker) -> None:
        client, b.client = b.client, None
        if client is not None:
            client.close()

    # -- measuring ----------------------------------------------------------------
    def poll(self, now: float | None = None) -> int:
        """Start measuring every broker with due pools; returns how many."""
        # Half a tick of slack: a wake-up slightly early still counts as on time.
        t = (time.monotonic() if now is None else now) + self.tick / 2
        jobs = []
        with self._lock:
            for b in self._brokers.values():
                due = [pid for pid, at in b.next_due.items() if at <= t]
                if not due:
                    continue
                if b.busy:
                    metrics.POLL_SKIPPED.labels(*b.labels()).inc()
                    continue
                for pid in due:
                    interval = b.pools[pid].interval
                    b.next_due[pid] = (math.floor(t / interval) + 1) * interval
                key = tuple(sorted(due))
                p = b.plans.get(key)
                if p is None:
                    p = b.plans[key] = plan([b.pools[pid].pool for pid in key])
                b.busy = True
                jobs.append((b, p))
        for b, p in jobs:
            self._executor.submit(self._measure, b, p)
        return len(jobs)

    def measure_now(self) -> dict[str, PoolMeasurement]:
        """Measure every registered pool at once, on the calling thread."""
        with self._lock:
            brokers = [
                (b, plan([r.pool for r in b.pools.values()])) for b in self._brokers.values()
            ]
        out: dict[str, PoolMeasurement] = {}
        for b, p in brokers:
            out.update(self._round_trip(b, p))
        return out

    def _round_trip(self, b: _Broker, p: Plan) -> dict[str, PoolMeasurement]:
        started = time.perf_counter()
        try:
            with self._lock:
                if b.client is None:  # lazy: connect() does no I/O
                    b.client = self._connect(b.address, self.timeout)
                client = b.client
            results = run(client, p)
        except Exception as e:  # a bad address: the pools are blind, not idle
            error, now = f"{type(e).__name__}: {e}", time.time()
            results = {
                s.query.pool_id: PoolMeasurement(s.query.pool_id, now, error=error) for s in p.pools
            }
        metrics.POLL_SECONDS.observe(time.perf_counter() - started)
        if any(not m.ok for m in results.values()):
            metrics.BROKER_ERRORS.labels(*b.labels()).inc()
        return results

    def _measure(self, b: _Broker, p: Plan) -> None:
        try:
            results = self._round_trip(b, p)
            self.on_result(b.broker_id, results)
        except Exception:  # a bug here must not stop later polls
            log.exception("measuring broker %s failed", b.broker_id)
        finally:
            with self._lock:
                b.busy = False
                if self._brokers.get(b.broker_id) is not b:
                    self._close(b)  # unregistered meanwhile

    # -- background loop ----------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.poll()
            # Wake on the tick grid, so pools of equal interval stay together.
            delay = self.tick - (time.monotonic() % self.tick)
            if self._stop.wait(delay):
                return

    def stop(self, wait: bool = True) -> None:
        """Stop polling; `wait=False` does not wait for round trips in flight (a
        broker whose name does not resolve can hold one for many seconds)."""
        self._stop.set()
        if self._thread is not None and wait:
            self._thread.join()
        self._executor.shutdown(wait=wait, cancel_futures=True)
        if wait:
            with self._lock:
                for b in self._brokers.values():
                    self._close(b)
