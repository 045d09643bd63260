"""Measure the backlog of every pool on one broker in ONE pipelined round trip.

Read (redis-py pipeline, transaction=False, so nothing blocks the broker):
- LLEN of each queue's list and priority sub-lists;
- HVALS of each distinct `unacked` hash (kombu: JSON [payload, exchange,
  routing_key]; Celery protocol 2 keeps the ETA in payload["headers"]["eta"]);
- one MGET of every pod's busy report (see reporter.py);
- HLEN of PyWorkflow's in-flight hash of every PyWorkflow pod.

Per queue q (routing key q, Celery's default direct routing):
    waiting  = sum of LLEN over q's lists
    eta      = unacked entries of q whose ETA is in the future
    running  = sum over the pool's reporting pods of running[q]
    reserved = max(0, due - running_unacked)
where `due` counts the other unacked entries of q (prefetched, due ETA and, with
acks_late, running) and `running_unacked` is what every reporting pod on the
same `unacked` hash runs for q without having acknowledged it yet (acks_late).
Without acks_late a running task was acknowledged when it started and left
`unacked`, so it is only in `running`; with acks_late it is in both and the
subtraction removes it once. A pod without a report is unknown: with acks_late
its running tasks show as reserved (the backlog stays right), without acks_late
they are missed, at most its concurrency each.

    backlog = waiting + reserved + running   (ETA tasks are reported, not summed)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from . import reporter
from .counts import PoolMeasurement, QueueCounts
from .keys import KeyOptions, busy_key, inflight_key

Runtime = Literal["celery", "pyworkflow"]
Report = dict[str, tuple[int, int, int, int]]  # reporter.decode()


@dataclass(frozen=True, slots=True)
class PoolQuery:
    """What to read for one pool."""

    namespace: str
    name: str
    queues: tuple[str, ...]
    keys: KeyOptions = field(default_factory=KeyOptions)
    runtime: Runtime = "celery"
    pods: tuple[str, ...] = ()

    @property
    def pool_id(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class _PodSlots:
    pod: str
    report: int  # index into the MGET reply
    inflight: int  # index of the HLEN reply; -1 for Celery pods


@dataclass(frozen=True, slots=True)
class _PoolSlots:
    query: PoolQuery
    lists: tuple[tuple[str, tuple[int, ...]], ...]  # queue -> LLEN reply indexes
    unacked: int  # index of the HVALS reply
    pods: tuple[_PodSlots, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """The commands of one round trip and where each pool's replies are; build it
    once per set of pools and reuse it every tick."""

    commands: tuple[tuple[str, ...], ...]
    pools: tuple[_PoolSlots, ...]
    unacked: tuple[int, ...]  # indexes of the HVALS replies
    mget: int  # index of the MGET reply, -1 without pods


def plan(pools: Sequence[PoolQuery]) -> Plan:
    commands: list[tuple[str, ...]] = []
    index: dict[tuple[str, ...], int] = {}

    def slot(*command: str) -> int:
        if command not in index:  # pools may share queues and the unacked hash
            index[command] = len(commands)
            commands.append(command)
        return index[command]

    busy_keys: list[str] = []
    slots = []
    for q in pools:
        lists = tuple(
            (queue, tuple(slot("LLEN", k) for k in q.keys.queue_lists(queue))) for queue in q.queues
        )
        pods = []
        for pod in q.pods:
            busy_keys.append(q.keys.key(busy_key(q.namespace, q.name, pod)))
            inflight = slot("HLEN", inflight_key(pod)) if q.runtime == "pyworkflow" else -1
            pods.append(_PodSlots(pod, len(busy_keys) - 1, inflight))
        slots.append(_PoolSlots(q, lists, slot("HVALS", q.keys.unacked), tuple(pods)))
    unacked = tuple(i for c, i in index.items() if c[0] == "HVALS")
    mget = -1
    if busy_keys:
        mget = len(commands)
        commands.append(("MGET", *busy_keys))
    return Plan(tuple(commands), tuple(slots), unacked, mget)


def eta_timestamp(value: Any) -> float | None:
    """Unix time of a Celery `eta` header (ISO 8601; naive means UTC)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def count_unacked(values: Iterable[bytes | str], now: float) -> dict[str, list[int]]:
    """Per routing key: [due, future ETA] entries of an `unacked` hash."""
    out: dict[str, list[int]] = {}
    for raw in values:
        try:
            payload, _exchange, rk = json.loads(raw)
        except (ValueError, TypeError):
            continue  # not a kombu entry
        headers = payload.get("headers") if isinstance(payload, dict) else None
        eta = eta_timestamp(headers.get("eta")) if isinstance(headers, dict) else None
        row = out.setdefault(str(rk), [0, 0])
        row[1 if eta is not None and eta > now else 0] += 1
    return out


def _error(reply: Any) -> str | None:
    return f"{type(reply).__name__}: {reply}" if isinstance(reply, Exception) else None


def _reports(replies: list[Any], p: Plan, size: int) -> list[Report | None]:
    if p.mget < 0 or _error(replies[p.mget]):
        return [None] * size
    out: list[Report | None] = []
    for raw in replies[p.mget]:
        try:
            out.append(reporter.decode(raw) if raw is not None else None)
        except (ValueError, TypeError, KeyError, IndexError):
            out.append(None)  # someone else's value: unknown
    return out


def evaluate(p: Plan, replies: list[Any], now: float) -> dict[str, PoolMeasurement]:
    """Turn the replies of `p` (exceptions in place of failed commands) into counts."""
    reports = _reports(replies, p, sum(len(pool.pods) for pool in p.pools))
    mget_error = _error(replies[p.mget]) if p.mget >= 0 else None
    unacked = {i: count_unacked(replies[i], now) for i in p.unacked if not _error(replies[i])}
    # Running-but-unacknowledged tasks of every reporting pod, per unacked hash.
    running_unacked: dict[tuple[int, str], int] = {}
    for pool in p.pools:
        for pod in pool.pods:
            for rk, c in (reports[pod.report] or {}).items():
                k = (pool.unacked, rk)
                running_unacked[k] = running_unacked.get(k, 0) + c[reporter.RUNNING_UNACKED]

    out: dict[str, PoolMeasurement] = {}
    for pool in p.pools:
        pid = pool.query.pool_id
        failed = [
            e
            for e in (
                mget_error,
                _error(replies[pool.unacked]),
                *(_error(replies[i]) for _, idx in pool.lists for i in idx),
                *(_error(replies[pod.inflight]) for pod in pool.pods if pod.inflight >= 0),
            )
            if e
        ]
        if failed:
            out[pid] = PoolMeasurement(pid, now, error=failed[0])
            continue
        pod_reports = [(pod, reports[pod.report]) for pod in pool.pods]
        held = unacked[pool.unacked]
        queues: dict[str, QueueCounts] = {}
        for queue, idx in pool.lists:
            due, future = held.get(queue) or (0, 0)
            running = sum(r[queue][reporter.RUNNING] for _, r in pod_reports if r and queue in r)
            queues[queue] = QueueCounts(
                waiting=sum(int(replies[i]) for i in idx),
                reserved=max(0, due - running_unacked.get((pool.unacked, queue), 0)),
                eta=future,
                running=running,
            )
        pods: dict[str, int | None] = {}
        for pod, r in pod_reports:
            busy = sum(c[reporter.RUNNING] for c in r.values()) if r is not None else None
            if pod.inflight >= 0 and int(replies[pod.inflight]) > 0:
                # PyWorkflow lists its executing singleton tasks per pod.
                busy = max(busy or 0, int(replies[pod.inflight]))
            pods[pod.pod] = busy
        out[pid] = PoolMeasurement(pid, now, queues, pods)
    return out


def run(client: redis.Redis, p: Plan) -> dict[str, PoolMeasurement]:
    """Execute `p` in one round trip. Never raises: a failure (connection, auth,
    timeout, wrong key type) comes back as an error on the pools it concerns."""
    now = time.time()
    if not p.commands:
        return {}
    try:
        pipe = client.pipeline(transaction=False)
        for command in p.commands:
            pipe.execute_command(*command)  # type: ignore[no-untyped-call]
        replies = pipe.execute(raise_on_error=False)
    except Exception as e:  # every pool of the broker is blind this time
        error = f"{type(e).__name__}: {e}"
        return {
            s.query.pool_id: PoolMeasurement(s.query.pool_id, now, error=error) for s in p.pools
        }
    return evaluate(p, replies, now)


def measure(client: redis.Redis, pools: Sequence[PoolQuery]) -> dict[str, PoolMeasurement]:
    return run(client, plan(pools))


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """How to reach a broker's master: `hosts` are host:port of the Redis server,
    or of the Sentinels when `master_name` is set."""

    hosts: tuple[str, ...]
    db: int = 0
    master_name: str | None = None
    password: str | None = None
    username: str | None = None
    sentinel_password: str | None = None
    tls: bool = False
    ca_file: str | None = None


def _hostport(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


def connect(address: BrokerAddress, timeout: float = 2.0) -> redis.Redis:
    """A client of the broker's master (bytes replies). Lazy: nothing is contacted
    before the first command; through Sentinel every new connection asks for the
    current master. One immediate retry covers a socket the server closed."""
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 1),
    }
    if address.tls:
        common.update(ssl=True, ssl_ca_certs=address.ca_file)
    if address.master_name:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            [_hostport(h) for h in address.hosts],
            sentinel_kwargs={**common, "password": address.sentinel_password},
        )
        master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            address.master_name,
            db=address.db,
            username=address.username,
            password=address.password,
            **common,
        )
        return master
    host, port = _hostport(address.hosts[0])
    return redis.Redis(
        host=host,
        port=port,
        db=address.db,
        username=address.username,
        password=address.password,
        **common,
    )
