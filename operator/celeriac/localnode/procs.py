"""Finding and killing the processes a local node started (development and tests only).

Every process the agent starts carries `CELERIAC_LOCALNODE=<agent id>` and
`CELERIAC_LOCALNODE_CONTAINER=<pod uid>/<container>` in its initial
environment, which children inherit; /proc/<pid>/environ shows it, so strays
that left their process group are found too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

MARKER = "CELERIAC_LOCALNODE"
CONTAINER_MARKER = "CELERIAC_LOCALNODE_CONTAINER"


def marker_env(agent_id: str, container: str | None = None) -> dict[str, str]:
    env = {MARKER: agent_id}
    if container is not None:
        env[CONTAINER_MARKER] = container
    return env


def _environ(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read().split(b"\0")
    except OSError:  # gone, or a kernel thread
        return []


def find(name: str, value: str | None = None) -> list[int]:
    """PIDs whose environment has name (set to value, when given); never our own."""
    prefix = f"{name}=".encode()
    exact = f"{name}={value}".encode() if value is not None else None
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        for var in _environ(int(entry)):
            if (exact is not None and var == exact) or (exact is None and var.startswith(prefix)):
                found.append(int(entry))
                break
    return found


def kill(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def kill_all(name: str, value: str | None = None, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process carrying the marker until none is left; the PIDs seen."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        pids = find(name, value)
        if not pids or time.monotonic() > deadline:
            return sorted(seen | set(pids))
        seen.update(pids)
        kill(pids)
        time.sleep(0.05)
