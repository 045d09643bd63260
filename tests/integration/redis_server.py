"""A throwaway redis-server (Debian's) on a free loopback port."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from waiting import wait_for

from celeriac.localplane.controlplane import free_ports


def free_port() -> int:
    return free_ports(1)[0]


@contextmanager
def redis_server(workdir: Path) -> Iterator[int]:
    """Run redis-server without persistence in `workdir`; yields its port."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir)]
    args += ["--save", "", "--appendonly", "no", "--logfile", "redis.log"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with redis.Redis(port=port, socket_connect_timeout=0.5) as r:

            def up() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(
                        f"redis-server exited: {(workdir / 'redis.log').read_text()}"
                    )
                try:
                    return bool(r.ping())
                except redis.ConnectionError:
                    return False

            wait_for(up, timeout=10, what="redis-server")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
