"""WorkerPool reconcile: the I/O around the pure render and status functions
(read the brokers and their Secrets, apply, read the Deployment back)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

from kubernetes import client
from pydantic import ValidationError

from . import kube, reconcile
from .api import GROUP, VERSION, WORKFLOW_BROKER, WorkerPoolSpec, WorkflowBrokerSpec
from .apply import Applier
from .autoscaler import Autoscaler, Tracked
from .conditions import get_condition
from .kube import secret_value
from .readcache import cached
from .render.connection import connection
from .render.meta import POOL_LABEL, Owner
from .render.pool import (
    PoolBroker,
    PoolFacts,
    concurrency,
    names,
    password_secrets,
    queues,
    render_pool,
    transport_key_options,
)
from .scaling import policy
from .scaling.keys import KeyOptions
from .scaling.measure import BrokerAddress, PoolQuery
from .scaling.poller import Registration
from .workerwatch import WorkerWatch

log = logging.getLogger("celeriac.pool")
Emit = Callable[[str, str, str], None]  # (type, reason, message) -> a Kubernetes Event
POOL_KINDS = [("v1", "ConfigMap"), ("apps/v1", "Deployment"), ("policy/v1", "PodDisruptionBudget")]


@dataclass(frozen=True)
class Blocked:
    reason: str
    message: str


def _broker(api: client.ApiClient, namespace: str, name: str) -> tuple[PoolBroker, bool] | Blocked:
    """The broker and whether it is Ready."""
    body = cached(
        ("broker", namespace, name),
        lambda: kube.get_custom(api, GROUP, VERSION, WORKFLOW_BROKER.plural, namespace, name),
    )
    if body is None:
        return Blocked("BrokerNotFound", f"WorkflowBroker {name} not found")
    try:
        spec = WorkflowBrokerSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return Blocked("BrokerNotReady", f"WorkflowBroker {name} has an invalid spec")
    cond = get_condition((body.get("status") or {}).get("conditions"), "Ready")
    return PoolBroker(name, spec), bool(cond and cond.get("status") == "True")


@lru_cache(maxsize=4096)
def _fingerprint(uid: str, version: str, data: tuple[tuple[str, str], ...]) -> str:
    # Slow, salted hash: the fingerprint ends up in a pod annotation, and must not
    # let anyone who reads it test guesses of a weak password quickly.
    joined = "\0".join(f"{k}={v}" for k, v in data).encode()
    return hashlib.pbkdf2_hmac("sha256", joined, uid.encode(), 50_000).hex()[:16]


Secret = dict[str, Any]  # as the API returns it (plain data, not typed models)


def read_secrets(
    api: client.ApiClient, namespace: str, names_: list[str]
) -> dict[str, Secret] | Blocked:
    applier, out = Applier(api), {}
    for name in names_:
        probe = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"namespace": namespace, "name": name},
        }
        secret = cached(("secret", namespace, name), partial(applier.get, probe))
        if secret is None:
            return Blocked("BrokerNotReady", f"password Secret {name} not found")
        out[name] = secret
    return out


def secrets_fingerprint(secrets: dict[str, Secret]) -> str:
    parts = []
    for name in sorted(secrets):
        meta = secrets[name]["metadata"]
        data = tuple(sorted((secrets[name].get("data") or {}).items()))
        parts.append(_fingerprint(str(meta["uid"]), str(meta["resourceVersion"]), data))
    return ",".join(parts)


def reconcile_pool(
    api: client.ApiClient,
    body: dict[str, Any],
    emit: Emit,
    autoscaler: Autoscaler | None = None,
    watch: WorkerWatch | None = None,
) -> dict[str, Any]:
    """One reconcile; returns the status patch. `watch`, when synced, answers the
    reads of the Deployment and the worker pods."""
    meta, status = body["metadata"], body.get("status") or {}
    generation, now = meta["generation"], reconcile.now()
    try:
        spec = WorkerPoolSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        return reconcile.pool_blocked(
            status, generation, "ConfigInvalid", reconcile.validation_message(err), now
        )
    owner = Owner("WorkerPool", meta["name"], meta["namespace"], meta["uid"])
    seen = watch if watch and watch.synced else None
    name = names(owner.name)["deployment"]
    live = seen.deployment(owner.namespace, name) if seen else _listed_deployment(api, owner)
    outcome = _reconcile(api, owner, spec, autoscaler, live, seen)
    if isinstance(outcome, Blocked) and _reason(status) != outcome.reason:
        emit("Warning", outcome.reason, outcome.message)
    if isinstance(outcome, Outcome) and outcome.applied:
        live = _read_deployment(api, owner)
    state = _deployment_state(live)
    problem = (outcome.reason, outcome.message) if isinstance(outcome, Blocked) else None
    broker_ready = isinstance(outcome, Outcome) and outcome.broker_ready
    return reconcile.pool_status(
        owner.name, spec, generation, status, state, broker_ready, problem, now
    )


def _reconcile(
    api: client.ApiClient,
    owner: Owner,
    spec: WorkerPoolSpec,
    autoscaler: Autoscaler | None,
    live: Mapping[str, Any] | None,
    seen: WorkerWatch | None,
) -> Blocked | Outcome:
    """Apply what can be applied, or the problem that stops it. Workers already
    running keep running while blocked: a missing broker object is no reason to
    stop consuming from a broker that may well be up."""
    found = _broker(api, owner.namespace, spec.broker_ref.name)
    if isinstance(found, Blocked):
        return found
    broker, ready = found
    results: PoolBroker | None = None
    if spec.result_backend.type == "broker":
        ref = spec.result_backend.broker_ref or spec.broker_ref
        if ref.name == broker.name:
            results = broker
        else:
            other = _broker(api, owner.namespace, ref.name)
            if isinstance(other, Blocked):
                return other
            results = other[0]
    pool_id = f"{owner.namespace}/{owner.name}"
    auto = spec.autoscaling if spec.autoscaling and spec.autoscaling.enabled else None
    lock = autoscaler.hold(pool_id) if autoscaler and auto else None
    with lock or nullcontext():
        # Under the autoscaler's lock: the replicas applied are the ones it set.
        known = autoscaler.replicas_of(pool_id) if autoscaler and lock else None
        replicas = known if known is not None else _replicas(spec, live)
        facts = PoolFacts(broker, results, replicas)
        secrets = read_secrets(api, owner.namespace, password_secrets(owner, facts))
        if isinstance(secrets, Blocked):
            return secrets
        facts = PoolFacts(broker, results, replicas, secrets_fingerprint(secrets))
        # Idle timer runs write nothing and read little: apply only when an input
        # changed or the Deployment is gone.
        inputs, at = _inputs(owner, spec, facts), time.monotonic()
        last = _APPLIED.get(owner.uid)
        applied = live is None or last is None or last[0] != inputs or at - last[1] > FULL_APPLY
        if applied:
            _apply(api, owner, spec, facts)
            _APPLIED[owner.uid] = (inputs, at)
    if autoscaler and auto:
        address = _address(owner.namespace, broker, secrets)
        if isinstance(address, Blocked):
            return address
        autoscaler.track(
            Registration(
                PoolQuery(
                    owner.namespace,
                    owner.name,
                    tuple(queues(spec)),
                    KeyOptions.from_transport_options(transport_key_options(spec)),
                    spec.runtime,
                    seen.pods(owner.namespace, owner.name) if seen else _pods(api, owner),
                ),
                f"{owner.namespace}/{broker.name}",
                address,
                float(auto.poll_interval_seconds),
            ),
            Tracked(
                owner.namespace,
                owner.name,
                owner.uid,
                names(owner.name)["deployment"],
                policy.settings(auto, concurrency(spec)),
                facts.replicas,
            ),
        )
    elif autoscaler:
        autoscaler.forget(pool_id)
    return Outcome(ready, applied)


@dataclass(frozen=True)
class Outcome:
    broker_ready: bool
    applied: bool  # objects were (re)applied this time


# Per pool uid: the inputs and time of the last successful apply (process memory;
# a restart applies everything once, which writes nothing when nothing changed).
# A full apply every FULL_APPLY seconds also repairs objects someone edited.
_APPLIED: dict[str, tuple[str, float]] = {}
FULL_APPLY = 300.0


def forget(uid: str) -> None:
    _APPLIED.pop(uid, None)


def _inputs(owner: Owner, spec: WorkerPoolSpec, facts: PoolFacts) -> str:
    parts = [
        owner.name,
        spec.model_dump_json(),
        facts.broker.spec.model_dump_json(),
        facts.results.spec.model_dump_json() if facts.results else "",
        str(facts.replicas),
        facts.secrets_fingerprint,
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _address(
    namespace: str, broker: PoolBroker, secrets: dict[str, Secret]
) -> BrokerAddress | Blocked:
    """How the autoscaler reaches the broker, passwords included (kept in memory)."""
    conn = connection(broker.name, namespace, broker.spec)
    passwords: list[str | None] = []
    for ref in (conn.password, conn.sentinel_password):
        value = None
        if ref:
            secret = secrets.get(ref.name)
            value = secret_value(secret.get("data") if secret else None, ref.key)
            if value is None:
                return Blocked("BrokerNotReady", f"Secret {ref.name} has no key {ref.key}")
        passwords.append(value)
    return BrokerAddress(
        hosts=tuple(conn.hosts),
        db=conn.broker_db,
        master_name=conn.master_name,
        password=passwords[0],
        sentinel_password=passwords[1],
        tls=conn.scheme == "rediss",
    )


def _pods(api: client.ApiClient, owner: Owner) -> tuple[str, ...]:
    """The pool's worker pods (one list of the namespace's workers per window)."""
    pods = cached(
        ("pods", owner.namespace),
        lambda: Applier(api).list_objects(
            "v1", "Pod", owner.namespace, "app.kubernetes.io/component=worker"
        ),
    )
    metas = [p["metadata"] for p in pods]
    return tuple(
        sorted(m["name"] for m in metas if (m.get("labels") or {}).get(POOL_LABEL) == owner.name)
    )


def _reason(status: dict[str, Any]) -> str | None:
    cond = get_condition(status.get("conditions"), "Ready")
    return cond.get("reason") if cond else None


def _deployment_state(d: Mapping[str, Any] | None) -> reconcile.DeploymentState | None:
    if d is None:
        return None
    spec, st = d.get("spec") or {}, d.get("status") or {}
    return reconcile.DeploymentState(
        wanted=int(spec.get("replicas") or 0),
        replicas=int(st.get("replicas") or 0),
        ready=int(st.get("readyReplicas") or 0),
        updated=int(st.get("updatedReplicas") or 0),
        current=int(st.get("observedGeneration") or 0)
        >= int(d.get("metadata", {}).get("generation") or 0),
    )


def _replicas(spec: WorkerPoolSpec, live: Mapping[str, Any] | None) -> int:
    """spec.replicas, or with autoscaling what the Deployment has (the autoscaler
    writes it through the scale subresource; not fought), min on creation."""
    if not (spec.autoscaling and spec.autoscaling.enabled):
        return spec.replicas
    replicas = (live or {}).get("spec", {}).get("replicas")
    return int(replicas) if replicas is not None else spec.autoscaling.min_replicas


def _read_deployment(api: client.ApiClient, owner: Owner) -> dict[str, Any] | None:
    """The pool's Deployment as plain data (typed models cost milliseconds per
    object to build; at a thousand pools that is the operator's main cost)."""
    name = names(owner.name)["deployment"]
    probe = {"apiVersion": "apps/v1", "kind": "Deployment"}
    return Applier(api).get({**probe, "metadata": {"namespace": owner.namespace, "name": name}})


def _listed_deployment(api: client.ApiClient, owner: Owner) -> dict[str, Any] | None:
    """Without a synced watch: from one list of the namespace's workers per window."""
    name = names(owner.name)["deployment"]
    applier = Applier(api)
    listed = cached(
        ("deployments", owner.namespace),
        lambda: applier.list_objects(
            "apps/v1", "Deployment", owner.namespace, "app.kubernetes.io/component=worker"
        ),
    )
    return next((d for d in listed if d["metadata"]["name"] == name), None)


def _apply(api: client.ApiClient, owner: Owner, spec: WorkerPoolSpec, facts: PoolFacts) -> None:
    applier = Applier(api)
    desired = render_pool(owner, spec, facts)
    for obj in desired:
        outcome = applier.apply(obj)
        if outcome != "unchanged":
            log.info("%s %s/%s %s", outcome, obj["kind"], owner.namespace, obj["metadata"]["name"])
    applier.prune(
        owner.namespace,
        owner.uid,
        POOL_KINDS,
        {(o["kind"], o["metadata"]["name"]) for o in desired},
    )
