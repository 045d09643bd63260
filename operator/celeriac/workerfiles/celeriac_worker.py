"""Worker launcher and Celery bootstrap, shipped into every WorkerPool pod.

The operator mounts this file, `settings.json` (no secrets) and the busy reporter
from a ConfigMap at /etc/celeriac. It runs inside the user's image, so it needs
only the standard library plus what any Celery worker image has (celery, redis).

- `python3 /etc/celeriac/celeriac_worker.py` (the container command) builds the
  broker and result-backend URLs from the settings and the passwords that
  Kubernetes put in the environment from Secret references (percent-encoded
  here; `$(VAR)` expansion cannot encode), then
  - celery runtime: execs `celery -A celeriac_worker worker ...`;
  - pyworkflow runtime: runs `pyworkflow worker run ... -- --concurrency=N` in
    this process, with the passwords given to redis-py directly, because
    PyWorkflow prints its broker URL and its lock code takes no passwords.
- `celery -A celeriac_worker` imports this module as the app: the module-level
  `app` attribute imports the user's app and overrides its broker, backend,
  transport options and worker settings AFTER the app's own configuration (so
  `config_from_object` and hard-coded URLs lose). Celery also prefers the
  CELERY_BROKER_URL / CELERY_RESULT_BACKEND variables set by the launcher.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent


def settings() -> dict[str, Any]:
    path = os.environ.get("CELERIAC_SETTINGS") or str(HERE / "settings.json")
    with open(path, encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def _secret(name: str | None) -> str | None:
    return os.environ.get(name) if name else None


def url(broker: dict[str, Any], with_password: bool = True) -> str:
    """Celery URL: `;`-joined Sentinel URLs, each with the db (kombu takes the db
    from the first); the password is the Redis one, never the Sentinel's."""
    password = _secret(broker.get("passwordEnv")) if with_password else None
    auth = f":{quote(password, safe='')}@" if password else ""
    return ";".join(f"{broker['scheme']}://{auth}{h}/{broker['db']}" for h in broker["hosts"])


def transport_options(broker: dict[str, Any], visibility_timeout: int | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if visibility_timeout is not None:
        options["visibility_timeout"] = visibility_timeout
    if broker.get("masterName"):
        # kombu ignores ?master_name= in the URL: it must be a transport option.
        options["master_name"] = broker["masterName"]
        sentinel_password = _secret(broker.get("sentinelPasswordEnv"))
        if sentinel_password:
            options["sentinel_kwargs"] = {"password": sentinel_password}
    return options


def overrides(s: dict[str, Any], current: Any) -> dict[str, Any]:
    """Celery settings that replace the app's own; transport options are merged so
    the app keeps keys we do not set (priority_steps, global_keyprefix, ...)."""
    conf: dict[str, Any] = dict(s["conf"])
    broker, results = s["broker"], s.get("results")
    conf["broker_url"] = url(broker)
    conf["broker_transport_options"] = {
        **(current.get("broker_transport_options") or {}),
        **s.get("brokerOptions", {}),
        **transport_options(broker, s["visibilityTimeout"]),
    }
    if results:
        conf["result_backend"] = url(results)
        conf["result_backend_transport_options"] = {
            **(current.get("result_backend_transport_options") or {}),
            **transport_options(results, None),
        }
    else:
        conf["result_backend"] = None
    return conf


def _mark_ready(path: str) -> None:
    from celery.signals import worker_ready, worker_shutdown

    def ready(**_: Any) -> None:
        Path(path).touch()

    def gone(**_: Any) -> None:
        Path(path).unlink(missing_ok=True)

    worker_ready.connect(ready, weak=False)
    worker_shutdown.connect(gone, weak=False)


def _report_busy(app: Any, s: dict[str, Any]) -> None:
    if not s.get("busyKey"):
        return
    sys.path.insert(0, str(HERE))
    import celeriac_busy  # type: ignore[import-not-found]  # shipped next to this file

    pod = os.environ.get("POD_NAME", "")
    celeriac_busy.install(app, key=s["busyKey"] + pod)


# How long a popped message's record as unacknowledged is retried: a planned
# failover takes seconds, one after a crash Sentinel's down-after time more.
RECORD_SECONDS = 60.0


def _record_popped_messages() -> None:
    """kombu's Redis transport takes a message off its list (BRPOP) and records it
    as unacknowledged in a second request. A failover between the two (the write
    paused, then refused by the demoted master) lost the message: it was in no
    list and in no `unacked` hash. Retry the record until the current master,
    resolved through Sentinel again, takes it. Safe: the record is one MULTI/EXEC,
    and a message recorded twice is at worst delivered twice (late acks)."""
    try:
        from kombu.transport import redis as transport
        from redis import exceptions
    except ImportError:
        return
    record = transport.QoS.append
    if getattr(record, "retried", False):
        return
    retryable = (exceptions.ConnectionError, exceptions.TimeoutError, exceptions.ReadOnlyError)

    def append(self: Any, message: Any, delivery_tag: Any) -> None:
        deadline, delay = time.monotonic() + RECORD_SECONDS, 0.1
        while True:
            try:
                record(self, message, delivery_tag)  # type: ignore[no-untyped-call]
                return
            except retryable:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    append.retried = True  # type: ignore[attr-defined]
    transport.QoS.append = append  # type: ignore[method-assign]


def configured_app() -> Any:
    from celery.app.utils import find_app

    s = settings()
    app = find_app(s["app"])
    # Reading the configuration loads it now, including config_from_object, so
    # the update below is applied on top of it rather than replaced by it.
    keys = ("broker_transport_options", "result_backend_transport_options")
    current = {k: app.conf.get(k) for k in keys}
    app.conf.update(overrides(s, current))
    _mark_ready(s["readyFile"])
    _report_busy(app, s)
    _record_popped_messages()
    return app


_APP: Any = None


def __getattr__(name: str) -> Any:
    # `celery -A celeriac_worker` asks for `app`; build it on first use only, so
    # that running this file as the launcher imports nothing of the user's.
    global _APP
    if name in ("app", "celery"):
        if _APP is None:
            _APP = configured_app()
        return _APP
    raise AttributeError(name)


def _redis_passwords(broker: dict[str, Any]) -> None:
    """PyWorkflow gets password-less URLs (it prints them); redis-py gets the
    passwords: Sentinel connections the Sentinel password, every other
    connection without one the Redis password."""
    import redis.connection
    import redis.sentinel

    password = _secret(broker.get("passwordEnv"))
    sentinel_password = _secret(broker.get("sentinelPasswordEnv"))
    sentinel_init = redis.sentinel.Sentinel.__init__
    conn_init = redis.connection.AbstractConnection.__init__

    def sentinel(self: Any, sentinels: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) < 2:  # sentinel_kwargs not given positionally
            extra = dict(kwargs.get("sentinel_kwargs") or {})
            if sentinel_password and not extra.get("password"):
                extra["password"] = sentinel_password
            kwargs["sentinel_kwargs"] = extra
        sentinel_init(self, sentinels, *args, **kwargs)  # type: ignore[no-untyped-call]

    def connection(self: Any, *args: Any, **kwargs: Any) -> None:
        if password and kwargs.get("password") is None:
            kwargs["password"] = password
        conn_init(self, *args, **kwargs)

    redis.sentinel.Sentinel.__init__ = sentinel  # type: ignore[method-assign]
    redis.connection.AbstractConnection.__init__ = connection  # type: ignore[method-assign]


def _env(s: dict[str, Any]) -> None:
    os.environ["CELERIAC_SETTINGS"] = os.environ.get("CELERIAC_SETTINGS") or str(
        HERE / "settings.json"
    )
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p
    )
    results = s.get("results")
    os.environ["CELERY_BROKER_URL"] = url(s["broker"])
    if results:
        os.environ["CELERY_RESULT_BACKEND"] = url(results)
    else:
        os.environ.pop("CELERY_RESULT_BACKEND", None)


def main() -> None:
    s = settings()
    _env(s)
    pod = os.environ.get("POD_NAME") or os.uname().nodename
    # PyWorkflow names its in-flight hash after HOSTNAME; the autoscaler reads it.
    os.environ.setdefault("HOSTNAME", pod)
    args = [a.replace("$(POD_NAME)", pod) for a in s["args"]]
    if s["runtime"] == "celery":
        argv = ["celery", "-A", "celeriac_worker", "worker", *args]
        os.execvp(argv[0], argv)
    broker, results = s["broker"], s.get("results")
    # One Sentinel address (the Service): PyWorkflow's lock code splits on commas
    # and kombu on semicolons, so a single URL is the form both read.
    single = {**broker, "hosts": broker["hosts"][:1]}
    os.environ["PYWORKFLOW_CELERY_BROKER"] = url(single, with_password=False)
    os.environ["PYWORKFLOW_CELERY_RESULT_BACKEND"] = (
        url({**single, "db": results["db"]}, with_password=False) if results else "disabled"
    )
    if broker.get("masterName"):
        os.environ["PYWORKFLOW_CELERY_SENTINEL_MASTER"] = broker["masterName"]
    for var in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        os.environ.pop(var, None)  # PyWorkflow builds its own app from the above
    _redis_passwords(broker)
    _record_popped_messages()
    _mark_ready(s["readyFile"])
    from pyworkflow.cli import main as pyworkflow_main  # type: ignore[import-untyped]

    sys.argv = ["pyworkflow", *args]
    pyworkflow_main()


if __name__ == "__main__":
    main()
