"""Autoscaling shell: the poller measures every autoscaled pool, the pure policy
decides, and this module acts (pod deletion costs, the Deployment's scale
subresource, one Event per decision, status). The reconcile registers pools."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from . import metrics
from .api import GROUP, VERSION, WORKER_POOL
from .conditions import now_rfc3339
from .scaling import policy
from .scaling.counts import PoolMeasurement
from .scaling.poller import Poller, Registration

log = logging.getLogger("celeriac.autoscaler")
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
STATUS_EVERY_SECONDS = 10.0  # queue counts in status; decisions are written at once
FIELD_MANAGER = "celeriac-autoscaler"


def deletion_costs(pods: Mapping[str, int | None]) -> dict[str, str]:
    """Idle pods cheapest, then pods that reported nothing, busy pods by load:
    the ReplicaSet controller deletes the cheapest first."""
    return {
        pod: "-100" if busy == 0 else "0" if busy is None else str(100 * busy)
        for pod, busy in pods.items()
    }


@dataclass
class Tracked:
    """One autoscaled pool."""

    namespace: str
    name: str
    uid: str
    deployment: str
    settings: policy.Settings
    replicas: int  # the Deployment's, as last read or set
    history: policy.History = field(default_factory=policy.History)
    costs: dict[str, str] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)  # as last written
    status_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Autoscaler:
    def __init__(self, api: client.ApiClient) -> None:
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.poller = Poller(self._on_result)
        self._pools: dict[str, Tracked] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        self.poller.start()

    def stop(self) -> None:
        # The process is exiting: round trips in flight die with it.
        self.poller.stop(wait=False)

    def track(self, reg: Registration, tracked: Tracked) -> None:
        """Add or refresh a pool (settings, pods, address; replicas as last read)."""
        pid = reg.pool.pool_id
        with self._lock:
            old = self._pools.get(pid)
            if old is not None:
                # Replicas stay the autoscaler's own: the reconcile applied them.
                with old.lock:
                    old.settings, old.uid = tracked.settings, tracked.uid
            else:
                self._pools[pid] = tracked
        self.poller.register(reg)

    def forget(self, pool_id: str) -> None:
        with self._lock:
            self._pools.pop(pool_id, None)
        self.poller.unregister(pool_id)

    def hold(self, pool_id: str) -> threading.Lock | None:
        """The pool's lock: a reconcile applies replicas under it, so it never
        writes back a value the autoscaler is replacing."""
        with self._lock:
            t = self._pools.get(pool_id)
        return t.lock if t else None

    def replicas_of(self, pool_id: str) -> int | None:
        """What the autoscaler last set or read (call with the pool's lock held)."""
        t = self._pools.get(pool_id)
        return t.replicas if t else None

    def _on_result(self, broker_id: str, results: Mapping[str, PoolMeasurement]) -> None:
        for pid, m in results.items():
            with self._lock:
                t = self._pools.get(pid)
            if t is None:
                continue
            try:
                with t.lock:
                    self._act(t, m)
            except Exception:
                log.exception("autoscaling %s failed", pid)

    def _act(self, t: Tracked, m: PoolMeasurement) -> None:
        load = m.total if m.ok else None
        now = time.monotonic()
        d = policy.decide(t.settings, t.replicas, load, m.busy_pods, t.history, now)
        t.history = d.history
        labels = (t.namespace, t.name)
        metrics.POOL_REPLICAS.labels(*labels, "desired").set(d.replicas)
        metrics.POOL_REPLICAS.labels(*labels, "actual").set(t.replicas)
        for q, c in m.queues.items():
            for state in ("waiting", "reserved", "eta", "running"):
                metrics.QUEUE_TASKS.labels(*labels, q, state).set(getattr(c, state))
        status: dict[str, Any] = {"desiredReplicas": d.replicas}
        if m.ok:
            status["queues"] = m.status_queues()
            status["backlog"] = m.total.backlog
        if d.replicas != t.replicas:
            if d.replicas < t.replicas and m.ok:
                self._mark_costs(t, m)
            self.apps.patch_namespaced_deployment_scale(
                t.deployment,
                t.namespace,
                {"spec": {"replicas": d.replicas}},
                field_manager=FIELD_MANAGER,
            )
            message = f"{t.replicas} -> {d.replicas}: {d.reason}"
            log.info("scaled %s/%s %s", t.namespace, t.name, message)
            self._event(t, "Scaled", message)
            status.update(lastScaleTime=now_rfc3339(), lastScaleReason=message)
            t.replicas = d.replicas
        elif status == t.status or now - t.status_at < STATUS_EVERY_SECONDS:
            return  # unchanged counts write nothing; changing ones every 10 s at most
        t.status, t.status_at = status, now
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, t.namespace, WORKER_POOL.plural, t.name, {"status": status}
        )

    def _mark_costs(self, t: Tracked, m: PoolMeasurement) -> None:
        for pod, cost in deletion_costs(m.pods).items():
            if t.costs.get(pod) == cost:
                continue
            patch = {"metadata": {"annotations": {DELETION_COST: cost}}}
            try:
                self.core.patch_namespaced_pod(pod, t.namespace, patch)
                t.costs[pod] = cost
            except client.ApiException as err:
                if err.status != 404:
                    raise

    def _event(self, t: Tracked, reason: str, message: str) -> None:
        stamp = now_rfc3339()
        self.core.create_namespaced_event(
            t.namespace,
            client.CoreV1Event(
                metadata=client.V1ObjectMeta(generate_name=f"{t.name}."),
                involved_object=client.V1ObjectReference(
                    api_version=f"{GROUP}/{VERSION}",
                    kind="WorkerPool",
                    name=t.name,
                    namespace=t.namespace,
                    uid=t.uid,
                ),
                reason=reason,
                message=message,
                type="Normal",
                first_timestamp=stamp,
                last_timestamp=stamp,
                count=1,
                source=client.V1EventSource(component="celeriac-autoscaler"),
            ),
        )
