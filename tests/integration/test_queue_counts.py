"""Backlog measurement against a real redis-server and a real Celery worker.

No Kubernetes: a producer publishes through kombu, a `celery worker` subprocess
(concurrency 1, prefetch multiplier 4, the busy reporter loaded the way worker
pods load it) holds prefetched and ETA tasks while one runs, and every count
the measurement returns must be exactly what was put there.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from celery import Celery
from prometheus_client import REGISTRY
from redis_server import free_port, redis_server
from waiting import wait_for

from celeriac.scaling import reporter
from celeriac.scaling.counts import PoolMeasurement, QueueCounts
from celeriac.scaling.keys import KeyOptions, busy_key
from celeriac.scaling.measure import BrokerAddress, PoolQuery, connect, measure
from celeriac.scaling.poller import Poller, Registration

APPS = Path(__file__).resolve().parents[1] / "apps"
sys.path.insert(0, str(APPS))
countapp = importlib.import_module("countapp")  # the worker's app: settings, queue

PREFIX = "tenant-7:"
KEYS = KeyOptions(global_keyprefix=PREFIX)
POD = "countapp-5d8c9-x7k2p"


@pytest.fixture
def port(tmp_path: Path) -> Iterator[int]:
    with redis_server(tmp_path / "redis") as p:
        yield p


@pytest.fixture
def client(port: int) -> Iterator[redis.Redis]:
    c = connect(BrokerAddress((f"127.0.0.1:{port}",)))
    yield c
    c.close()


def query(*pods: str) -> PoolQuery:
    return PoolQuery("ns", "pool", (countapp.QUEUE,), keys=KEYS, pods=pods)


def counts(client: redis.Redis, *pods: str) -> PoolMeasurement:
    m = measure(client, [query(*pods)])["ns/pool"]
    assert m.ok, m.error
    return m


def publish(port: int, release: Path, acks_late: bool) -> None:
    """2 ETA tasks, the blocking task, then 10 tasks with priorities 0-9: 13 in all."""
    producer = Celery("producer", set_as_current=False)
    producer.conf.update(countapp.settings(f"redis://127.0.0.1:{port}/0", PREFIX, acks_late))
    with producer:
        producer.send_task("countapp.noop", ("eta-countdown",), countdown=600)
        eta = datetime.now(UTC) + timedelta(minutes=15)
        producer.send_task("countapp.noop", ("eta-at",), eta=eta)
        producer.send_task("countapp.hold", (str(release),))
        for priority in range(10):
            producer.send_task("countapp.noop", (f"p{priority}",), priority=priority)


class Worker:
    """`celery -A countapp worker` with the reporter copied in as `celeriac_busy`."""

    def __init__(self, port: int, workdir: Path, acks_late: bool) -> None:
        workdir.mkdir()
        shutil.copy(reporter.__file__, workdir / "celeriac_busy.py")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(APPS), str(workdir)]),
            "COUNTAPP_BROKER": f"redis://127.0.0.1:{port}/0",
            "COUNTAPP_PREFIX": PREFIX,
            "COUNTAPP_ACKS_LATE": "1" if acks_late else "0",
            "COUNTAPP_BUSY_KEY": busy_key("ns", "pool", POD),
        }
        args = [sys.executable, "-m", "celery", "-A", "countapp", "worker", "-Q", countapp.QUEUE]
        args += ["-c", "1", "-P", "prefork", "--prefetch-multiplier", "4", "-n", f"w@{POD}"]
        args += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"]
        self.log = workdir / "worker.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                args, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


StartWorker = Callable[[int, bool], Worker]


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[StartWorker]:
    started: list[Worker] = []

    def start(port: int, acks_late: bool) -> Worker:
        w = Worker(port, tmp_path / f"worker-{len(started)}", acks_late)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def test_priority_lists_are_where_kombu_puts_them(
    port: int, client: redis.Redis, tmp_path: Path
) -> None:
    publish(port, tmp_path / "release", acks_late=False)
    raw = redis.Redis(port=port)
    lengths = {k: int(raw.llen(k)) for k in KEYS.queue_lists(countapp.QUEUE)}
    assert lengths == {
        f"{PREFIX}work": 6,  # 2 ETA + hold (no priority) + priorities 0-2
        f"{PREFIX}work\x06\x163": 3,
        f"{PREFIX}work\x06\x166": 3,
        f"{PREFIX}work\x06\x169": 1,
    }
    assert raw.llen("work") == 0  # nothing unprefixed
    m = counts(client, POD)
    assert m.queues == {"work": QueueCounts(waiting=13)}
    assert m.pods == {POD: None}


@pytest.mark.parametrize("acks_late", [False, True], ids=["acks-early", "acks-late"])
def test_counts_with_a_real_worker(
    port: int, client: redis.Redis, tmp_path: Path, worker_factory: StartWorker, acks_late: bool
) -> None:
    release = tmp_path / "release"
    publish(port, release, acks_late)
    worker = worker_factory(port, acks_late)

    # The worker holds 4 + 2 messages (prefetch 4, each ETA task raises it by one).
    # Without acks_late the running task was acknowledged and 4 others are prefetched;
    # with acks_late the running one is one of the 4.
    reserved = 3 if acks_late else 4
    expected = QueueCounts(waiting=13 - 1 - reserved - 2, reserved=reserved, eta=2, running=1)

    def holding() -> PoolMeasurement | None:
        assert worker.proc.poll() is None, worker.log.read_text()
        m = counts(client, POD, "never-started")
        return m if m.queues["work"] == expected and m.pods[POD] == 1 else None

    m = wait_for(holding, timeout=60, what=f"{expected} and {POD} busy")
    assert m.pods == {POD: 1, "never-started": None}
    assert (m.busy_pods, m.unknown_pods) == (1, 1)
    assert m.total.backlog == 11
    # The pod's own view agrees, including whether the running task is acknowledged.
    raw_report = redis.Redis(port=port).get(KEYS.key(busy_key("ns", "pool", POD)))
    assert raw_report is not None
    report = reporter.decode(raw_report)
    assert report == {"work": (1, 1 if acks_late else 0, reserved, 2)}

    release.touch()
    drained = QueueCounts(eta=2)
    wait_for(
        lambda: (
            counts(client, POD).queues["work"] == drained and counts(client, POD).pods[POD] == 0
        ),
        timeout=60,
        what="everything due has run",
    )

    # Warm shutdown: the reporter's key goes away and the held ETA tasks go back.
    assert worker.stop() == 0, worker.log.read_text()
    m = counts(client, POD)
    assert m.pods == {POD: None}
    assert m.queues["work"] == QueueCounts(waiting=2)


def test_errors_are_errors_not_zeros(port: int, client: redis.Redis) -> None:
    raw = redis.Redis(port=port)
    raw.set(KEYS.key("broken"), "a string where a list should be")
    good, bad = query(), PoolQuery("ns", "bad", ("broken",), keys=KEYS)
    out = measure(client, [good, bad])
    assert out["ns/pool"].ok and out["ns/pool"].queues["work"] == QueueCounts()
    assert out["ns/bad"].error and "WRONGTYPE" in out["ns/bad"].error
    assert out["ns/bad"].queues == {}

    dead = connect(BrokerAddress((f"127.0.0.1:{free_port()}",)), timeout=0.5)
    out = measure(dead, [good, bad])
    assert {pid: m.ok for pid, m in out.items()} == {"ns/pool": False, "ns/bad": False}
    assert all("ConnectionError" in (m.error or "") for m in out.values())


def broker_errors(namespace: str, broker: str) -> float:
    labels = {"namespace": namespace, "broker": broker}
    return REGISTRY.get_sample_value("celeriac_broker_errors_total", labels) or 0.0


def test_poller_measures_each_broker_in_one_round_trip(port: int) -> None:
    raw = redis.Redis(port=port)
    for i in range(1, 5):
        raw.lpush(KEYS.key(f"q{i}"), *[b"x"] * i)
    results: dict[str, Mapping[str, PoolMeasurement]] = {}
    done = threading.Event()

    def on_result(broker_id: str, measured: Mapping[str, PoolMeasurement]) -> None:
        results[broker_id] = measured
        if len(results) == 2:
            done.set()

    live = BrokerAddress((f"127.0.0.1:{port}",))
    dead = BrokerAddress((f"127.0.0.1:{free_port()}",))
    poller = Poller(on_result, timeout=0.5)
    for i in range(5):
        pool = PoolQuery("ns", f"p{i}", (f"q{i}",), keys=KEYS)
        poller.register(Registration(pool, "ns/live", live))
    poller.register(Registration(PoolQuery("ns", "lost", ("q",)), "ns/dead", dead))
    errors_before = broker_errors("ns", "dead")
    raw.config_resetstat()
    try:
        assert poller.poll() == 2
        assert done.wait(10)
        calls = raw.info("commandstats")
        assert poller.poll() == 0  # nothing is due again before the interval passed
    finally:
        poller.stop()
    assert {pid: m.queues[f"q{pid[-1]}"].waiting for pid, m in results["ns/live"].items()} == {
        f"ns/p{i}": i for i in range(5)
    }
    assert not results["ns/dead"]["ns/lost"].ok
    assert broker_errors("ns", "dead") == errors_before + 1
    # 5 queues x 4 lists and one unacked hash; no MGET without pods.
    assert calls["cmdstat_llen"]["calls"] == 20
    assert calls["cmdstat_hvals"]["calls"] == 1
