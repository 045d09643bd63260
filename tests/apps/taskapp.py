"""A tiny Celery app for tests of worker pods on the local node.

The worker pods run `celery -A taskapp worker` with tests/apps on PYTHONPATH;
the broker and result backend come from CELERY_BROKER_URL and
CELERY_RESULT_BACKEND, which Celery reads from the environment.
"""

from __future__ import annotations

import time
from pathlib import Path

from celery import Celery
from celery.signals import worker_ready

app = Celery("taskapp")
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="taskapp.sleep")
def sleep(seconds: float, tag: str) -> str:
    """Sleep, printing when it starts and ends (tests read both lines in the pod log)."""
    print(f"task {tag} started", flush=True)
    time.sleep(seconds)
    print(f"task {tag} finished", flush=True)
    return f"done {tag}"


@worker_ready.connect
def _mark_ready(**_: object) -> None:
    # The pods' readiness probe is `test -e /tmp/worker-ready` (cheap, unlike `celery inspect`).
    Path("/tmp/worker-ready").touch()
