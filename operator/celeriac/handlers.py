"""kopf handlers: read, call the pure reconcile functions, write status. Thin."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from . import brokers, kube, metrics, pools
from .api import GROUP, VERSION, WORKER_POOL, WORKFLOW_BROKER
from .autoscaler import Autoscaler
from .workerwatch import WorkerWatch

PREFIX = "celeriac.io"
BROKER_POLL_SECONDS = 5.0  # safety net; topology events arrive faster
POOL_POLL_SECONDS = 20.0  # readiness, rollouts, broker and Secret changes; spec changes act at once


def changed(status: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Only what differs: a timer run that found nothing new writes nothing."""
    return {k: v for k, v in new.items() if status.get(k) != v}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Our own annotation names, not kopf's defaults, on objects users own.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    memo.api = kube.api_client()
    memo.autoscaler = Autoscaler(memo.api)
    memo.autoscaler.start()
    # Its own client: the watches hold their connections for minutes.
    memo.workers = WorkerWatch(kube.api_client(), memo.get("namespaces") or [])
    memo.workers.start()


@kopf.on.cleanup()
def stop_background(memo: kopf.Memo, **_: Any) -> None:
    memo.autoscaler.stop()
    memo.workers.stop()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # kopf's own loaders read KUBECONFIG when called; the client library's default
    # login captured it at import time, before `celeriac run` may have set it.
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.resume(GROUP, VERSION, WORKFLOW_BROKER.plural)
@kopf.on.create(GROUP, VERSION, WORKFLOW_BROKER.plural)
@kopf.on.update(GROUP, VERSION, WORKFLOW_BROKER.plural)
@kopf.timer(GROUP, VERSION, WORKFLOW_BROKER.plural, interval=BROKER_POLL_SECONDS)
def reconcile_broker(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    def emit(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message)

    with metrics.counted("WorkflowBroker"):
        new = brokers.reconcile_broker(memo.api, dict(body), emit)
        patch.status.update(changed(body.get("status") or {}, new))


@kopf.daemon(
    GROUP,
    VERSION,
    WORKFLOW_BROKER.plural,
    when=lambda spec, **_: spec.get("mode") == "sentinel",
    cancellation_timeout=5,
)
def sentinel_events(
    body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any
) -> None:
    def emit(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message)

    def idle(seconds: float) -> None:
        stopped.wait(seconds)

    brokers.follow_sentinel_events(memo.api, dict(body), lambda: bool(stopped), idle, emit)


@kopf.on.resume(GROUP, VERSION, WORKER_POOL.plural)
@kopf.on.create(GROUP, VERSION, WORKER_POOL.plural)
@kopf.on.update(GROUP, VERSION, WORKER_POOL.plural)
@kopf.timer(GROUP, VERSION, WORKER_POOL.plural, interval=POOL_POLL_SECONDS)
def reconcile_pool(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    # The timer also picks up what pools depend on but do not watch: their broker's
    # readiness, the password Secrets' content, the Deployment's rollout.
    def emit(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message)

    with metrics.counted("WorkerPool"):
        new = pools.reconcile_pool(memo.api, dict(body), emit, memo.autoscaler, memo.workers)
        patch.status.update(changed(body.get("status") or {}, new))


@kopf.on.delete(GROUP, VERSION, WORKER_POOL.plural, optional=True)
def forget_pool(namespace: str | None, name: str, uid: str, memo: kopf.Memo, **_: Any) -> None:
    memo.autoscaler.forget(f"{namespace}/{name}")
    pools.forget(uid)
