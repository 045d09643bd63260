"""Cost of backlog polling: 1,000 pools on 50 real redis-server processes.

Each broker gets 20 pools with 1-3 queues, a backlog spread over the priority
lists, unacknowledged entries (some with an ETA) and busy reports of most pods,
as Celery workers and the reporter leave them. The poller then measures every
pool every 5 s for about a minute; printed: this process's CPU seconds per
minute, its peak RSS, Redis commands per tick (per broker and in all, from
INFO commandstats), the brokers' own CPU, and the round-trip durations.

    .venv/bin/python bench/scaling_cost.py [--brokers 50] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from celeriac.localplane.controlplane import free_ports
from celeriac.scaling import reporter
from celeriac.scaling.counts import PoolMeasurement
from celeriac.scaling.keys import KeyOptions, busy_key
from celeriac.scaling.measure import BrokerAddress, PoolQuery
from celeriac.scaling.poller import Poller, Registration

POOLS_PER_BROKER = 20
INTERVAL = 5.0


@contextmanager
def redis_servers(n: int, workdir: Path) -> Iterator[list[int]]:
    procs: list[subprocess.Popen[bytes]] = []
    ports = free_ports(n)
    try:
        for i, port in enumerate(ports):
            d = workdir / f"r{i}"
            d.mkdir()
            args = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(d)]
            args += ["--save", "", "--appendonly", "no", "--logfile", "redis.log"]
            procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
        for port in ports:
            client = redis.Redis(port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            client.close()
        yield ports
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def message(rk: str, eta: str | None, rng: random.Random) -> dict[str, object]:
    """A Celery protocol 2 message as kombu stores it (body size varies)."""
    return {
        "body": "A" * rng.randint(100, 1200),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": "proj.tasks.work", "id": f"{rng.random()}", "eta": eta},
        "properties": {
            "priority": 0,
            "delivery_tag": f"{rng.random()}",
            "delivery_info": {"exchange": rk, "routing_key": rk},
        },
    }


def populate(port: int, b: int, rng: random.Random) -> list[PoolQuery]:
    """20 pools: queues with backlog, unacked entries, busy reports of most pods."""
    r = redis.Redis(port=port)
    pipe = r.pipeline(transaction=False)
    eta = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    pools = []
    for p in range(POOLS_PER_BROKER):
        keys = KeyOptions(global_keyprefix="app:" if p % 4 == 0 else "")
        queues = tuple(f"b{b}-p{p}-q{i}" for i in range(rng.randint(1, 3)))
        pods = tuple(f"pool-{p}-{i:05x}" for i in range(rng.randint(1, 5)))
        for q in queues:
            for priority in rng.sample(range(10), rng.randint(0, 4)):
                msgs = [json.dumps(message(q, None, rng)) for _ in range(rng.randint(1, 50))]
                pipe.lpush(keys.list_for_priority(q, priority), *msgs)
            for _ in range(rng.randint(0, 12)):
                entry = [message(q, eta if rng.random() < 0.2 else None, rng), q, q]
                pipe.hset(keys.unacked, f"{rng.random()}", json.dumps(entry))
        for pod in pods:
            if rng.random() < 0.8:
                counts = {q: [rng.randint(0, 2), 0, rng.randint(0, 3), 0] for q in queues}
                value = reporter.encode(counts, time.time())
                pipe.set(keys.key(busy_key("bench", f"b{b}-p{p}", pod)), value, ex=3600)
        pools.append(PoolQuery("bench", f"b{b}-p{p}", queues, keys=keys, pods=pods))
    pipe.execute()
    r.close()
    return pools


def command_calls(r: redis.Redis) -> int:
    """Commands the broker served, not counting INFO itself."""
    stats = r.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info",))


def broker_cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # like Ctrl-C: the finally blocks stop every redis-server


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    rng = random.Random(7)

    with tempfile.TemporaryDirectory() as tmp, redis_servers(args.brokers, Path(tmp)) as ports:
        registrations = []
        for b, port in enumerate(ports):
            address = BrokerAddress((f"127.0.0.1:{port}",))
            for pool in populate(port, b, rng):
                registrations.append(Registration(pool, f"bench/b{b}", address, INTERVAL))
        admin = {port: redis.Redis(port=port) for port in ports}

        durations: list[float] = []
        ticks: dict[str, int] = {}
        errors = 0
        lock = threading.Lock()

        def on_result(broker_id: str, results: Mapping[str, PoolMeasurement]) -> None:
            nonlocal errors
            took = time.time() - min(m.at for m in results.values())
            with lock:
                durations.append(took)
                ticks[broker_id] = ticks.get(broker_id, 0) + 1
                errors += sum(1 for m in results.values() if not m.ok)

        poller = Poller(on_result)
        for reg in registrations:
            poller.register(reg)
        for r in admin.values():
            r.config_resetstat()
        calls0 = {p: command_calls(r) for p, r in admin.items()}
        redis_cpu0 = sum(broker_cpu(r) for r in admin.values())

        cpu0, wall0 = time.process_time(), time.monotonic()
        poller.start()
        try:
            time.sleep(args.seconds)
        finally:
            poller.stop()
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0

        calls = {p: command_calls(r) - calls0[p] for p, r in admin.items()}
        redis_cpu = sum(broker_cpu(r) for r in admin.values()) - redis_cpu0
        for r in admin.values():
            r.close()

    n_ticks = statistics.mean(ticks.values())
    per_broker = [calls[p] / ticks[f"bench/b{b}"] for b, p in enumerate(ports)]
    q = statistics.quantiles(durations, n=20)
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"pools {len(registrations)} on {len(ports)} brokers, interval {INTERVAL:.0f}s")
    print(f"run {wall:.1f}s: {n_ticks:.1f} ticks per broker, {len(durations)} round trips")
    print(f"measurement errors: {errors}")
    print(f"poller CPU: {cpu / wall * 60:.2f} s per minute ({cpu / wall * 100:.1f}% of one core)")
    print(f"peak RSS: {peak_rss_mib:.1f} MiB")
    print(
        f"redis commands per tick: per broker mean {statistics.mean(per_broker):.1f} "
        f"(min {min(per_broker):.0f}, max {max(per_broker):.0f}), "
        f"all brokers {sum(calls.values()) / n_ticks:.0f}"
    )
    print(f"redis CPU (all brokers): {redis_cpu / wall * 60:.2f} s per minute")
    print(f"round trip: p50 {q[9] * 1000:.1f} ms, p95 {q[18] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
