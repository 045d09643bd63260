"""A Celery app that configures itself for a broker that does not exist, the way
real projects do (`config_from_object`). Worker pods must reach the real broker
through Sentinel anyway, with nothing in the app changed."""

from __future__ import annotations

from typing import Any

from celery import Celery

app = Celery("wrongapp")
app.config_from_object("wrongapp_settings")


@app.task(name="wrongapp.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="wrongapp.settings")
def settings() -> dict[str, Any]:
    """What the worker really runs with (no passwords)."""
    options = app.conf.broker_transport_options
    return {
        "master_name": options.get("master_name"),
        "visibility_timeout": options.get("visibility_timeout"),
        "priority_steps": options.get("priority_steps"),
        "prefetch": app.conf.worker_prefetch_multiplier,
        "acks_late": app.conf.task_acks_late,
        "time_limit": app.conf.task_time_limit,
    }
