"""A Celery app for exact queue counts: `hold` runs until a file appears.

Worker processes get their settings from the environment (COUNTAPP_BROKER,
COUNTAPP_PREFIX, COUNTAPP_ACKS_LATE) and, with COUNTAPP_BUSY_KEY, load the busy
reporter as worker pods do: a copy named `celeriac_busy` on PYTHONPATH.
"""

from __future__ import annotations

import importlib
import os
import time
from pathlib import Path
from typing import Any

from celery import Celery

QUEUE = "work"
PREFETCH_MULTIPLIER = 4


def settings(broker_url: str, prefix: str, acks_late: bool) -> dict[str, Any]:
    """The configuration of the worker, and of producers that publish to it."""
    return {
        "broker_url": broker_url,
        "broker_transport_options": {"global_keyprefix": prefix, "priority_steps": [0, 3, 6, 9]},
        "task_default_queue": QUEUE,
        "task_acks_late": acks_late,
        "worker_prefetch_multiplier": PREFETCH_MULTIPLIER,
        "task_ignore_result": True,
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
    }


app = Celery("countapp")
app.conf.update(
    settings(
        os.environ.get("COUNTAPP_BROKER", "redis://127.0.0.1:6379/0"),
        os.environ.get("COUNTAPP_PREFIX", ""),
        os.environ.get("COUNTAPP_ACKS_LATE") == "1",
    )
)


@app.task(name="countapp.hold")  # type: ignore[untyped-decorator]
def hold(release_file: str) -> None:
    """Run until `release_file` exists."""
    while not Path(release_file).exists():
        time.sleep(0.02)


@app.task(name="countapp.noop")  # type: ignore[untyped-decorator]
def noop(tag: str) -> str:
    return tag


if os.environ.get("COUNTAPP_BUSY_KEY"):
    importlib.import_module("celeriac_busy").install(
        app, os.environ["COUNTAPP_BUSY_KEY"], interval=0.1, ttl=5.0
    )
