"""kombu takes a message off its list and then, in a second request, records it as
unacknowledged. When a planned failover (writes paused, the old master demoted,
as the Redis preStop hook does) falls between the two, the workers' bootstrap
makes the record land on the master that took over: real redis-server, replica
and redis-sentinel processes, kombu through Sentinel."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kombu
import pytest
import redis
from kombu.transport import redis as transport
from waiting import wait_for

from celeriac.localplane.controlplane import free_ports

pytestmark = pytest.mark.integration
sys.path.insert(0, str(Path(__file__).parents[2] / "operator/celeriac/workerfiles"))
import celeriac_worker  # noqa: E402


def _server(port: int, workdir: Path, *extra: str) -> subprocess.Popen[bytes]:
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "no", "--dir", str(workdir), *extra]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL)


@pytest.fixture
def group(tmp_path: Path) -> Iterator[dict[str, int]]:
    """A master, its replica and one Sentinel (quorum 1) watching them."""
    ports = dict(zip(("a", "b", "sentinel"), free_ports(3), strict=True))
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {ports['sentinel']}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor m 127.0.0.1 {ports['a']} 1\n"
        "sentinel down-after-milliseconds m 2000\nsentinel failover-timeout m 5000\n"
    )
    procs = [
        _server(ports["a"], tmp_path),
        _server(ports["b"], tmp_path, "--replicaof", "127.0.0.1", str(ports["a"])),
        subprocess.Popen(["redis-sentinel", str(conf)], stdout=subprocess.DEVNULL),
    ]
    try:
        b = redis.Redis(port=ports["b"], decode_responses=True)
        s = redis.Redis(port=ports["sentinel"], decode_responses=True)
        wait_for(lambda: _ask(lambda: b.info("replication")["master_link_status"] == "up"), 20)
        wait_for(lambda: _ask(lambda: len(s.sentinel_slaves("m")) == 1), 30, 0.1, "Sentinel")
        yield ports
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _ask(probe: Any) -> Any:
    try:
        return probe()
    except (redis.RedisError, KeyError):
        return False


def test_record_of_a_popped_message_survives_a_handover(
    group: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport.QoS, "append", transport.QoS.append)  # undone afterwards
    celeriac_worker._record_popped_messages()
    a = redis.Redis(port=group["a"])
    b = redis.Redis(port=group["b"], decode_responses=True)
    sentinel = redis.Redis(port=group["sentinel"], decode_responses=True)
    url, options = f"sentinel://127.0.0.1:{group['sentinel']}", {"master_name": "m"}
    with kombu.Connection(url, transport_options=options) as conn:
        queue = kombu.Queue("q", kombu.Exchange("q", type="direct"), routing_key="q")
        conn.Producer().publish({"n": 1}, exchange=queue.exchange, routing_key="q", declare=[queue])
        channel = conn.channel()
        message = channel.basic_get("q", no_ack=True)  # taken off the list only
        assert message is not None
        tag = message.delivery_tag
        # The handover starts after the pop: writes paused, so the record waits.
        a.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
        outcome: list[Any] = []

        def record() -> None:
            try:
                channel.qos.append(message, tag)
                outcome.append("recorded")
            except Exception as err:
                outcome.append(err)

        recorder = threading.Thread(target=record)
        recorder.start()
        time.sleep(0.5)
        assert recorder.is_alive() and not outcome, outcome
        sentinel.execute_command("SENTINEL", "FAILOVER", "m")
        wait_for(
            lambda: sentinel.sentinel_get_master_addr_by_name("m")[1] == group["b"],
            30,
            0.05,
            "the Sentinel to switch to the replica",
        )
        a.execute_command("REPLICAOF", "127.0.0.1", str(group["b"]))
        a.execute_command("CLIENT", "UNPAUSE")
        recorder.join(90)
        assert outcome == ["recorded"]
        assert b.hexists("unacked", tag), "the popped message is recorded on the new master"
        assert b.llen("q") == 0
