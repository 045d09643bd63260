"""WorkflowBroker reconcile: the I/O around the pure render and status functions
(read Secrets and StatefulSets, apply, ask the Sentinels who is master)."""

from __future__ import annotations

import base64
import logging
import secrets
import string
from dataclasses import dataclass
from typing import Any, cast

import redis
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from . import reconcile
from .api import WorkflowBrokerSpec
from .apply import RESOURCES, Applier
from .render.broker import BrokerFacts, BrokerNames, render_broker
from .render.connection import Connection, connection
from .render.meta import ROLE_LABEL, Owner

log = logging.getLogger("celeriac.broker")
PASSWORD_ALPHABET = string.ascii_letters + string.digits  # URL- and config-safe


@dataclass(frozen=True)
class Observed:
    """What one look at the cluster and the broker showed."""

    redis_ready: int = 0
    redis_wanted: int = 0
    sentinel_ready: int = 0
    sentinel_wanted: int = 0
    master: str | None = None  # host the Sentinels (or the standalone pod) report
    problem: tuple[str, str] | None = None  # (reason, message) that blocks progress


def read_password(core: client.CoreV1Api, namespace: str, name: str, key: str) -> str | None:
    try:
        secret = core.read_namespaced_secret(name, namespace)
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    value = (secret.data or {}).get(key)
    return base64.b64decode(value).decode() if value else None


def ensure_generated_secret(core: client.CoreV1Api, owner: Owner, name: str) -> None:
    """Create the broker's password Secret once; it is never rewritten, so the
    password survives every reconcile (the owner reference deletes it with the broker)."""
    try:
        core.read_namespaced_secret(name, owner.namespace)
        return
    except ApiException as err:
        if err.status != 404:
            raise
    password = "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(32))
    body = {
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/managed-by": "celeriac",
                "celeriac.io/broker": owner.name,
            },
            "ownerReferences": [owner.reference()],
        },
        "type": "Opaque",
        "stringData": {"password": password},
    }
    try:
        core.create_namespaced_secret(owner.namespace, cast(Any, body))
        log.info("generated password Secret %s/%s", owner.namespace, name)
    except ApiException as err:
        if err.status != 409:  # created meanwhile by another reconcile
            raise


def sentinel_master(conn: Connection, password: str | None) -> str | None:
    """The master host the first answering Sentinel reports."""
    for hostport in conn.hosts:
        host, port = hostport.rsplit(":", 1)
        try:
            r = redis.Redis(
                host=host,
                port=int(port),
                password=password,
                socket_timeout=1,
                socket_connect_timeout=1,
            )
            addr = r.execute_command(  # type: ignore[no-untyped-call]
                "SENTINEL", "get-master-addr-by-name", conn.master_name
            )
            r.close()
        except (redis.RedisError, OSError):
            continue
        if addr:
            return str(addr[0].decode() if isinstance(addr[0], bytes) else addr[0])
    return None


def ping(conn: Connection, password: str | None) -> str | None:
    """None when the broker answers, else why not (for external brokers)."""
    if conn.master_name:
        master = sentinel_master(conn, password)
        return (
            None if master else f"no Sentinel of {', '.join(conn.hosts)} knows {conn.master_name}"
        )
    host, port = conn.hosts[0].rsplit(":", 1)
    try:
        r = redis.Redis(
            host=host,
            port=int(port),
            password=password,
            socket_timeout=2,
            socket_connect_timeout=2,
            ssl=conn.scheme == "rediss",
        )
        r.ping()
        r.close()
        return None
    except (redis.RedisError, OSError) as err:
        return f"{conn.hosts[0]}: {type(err).__name__}: {err}"


def statefulset_ready(apps: client.AppsV1Api, namespace: str, name: str) -> tuple[int, int]:
    try:
        sts = apps.read_namespaced_stateful_set(name, namespace)
    except ApiException as err:
        if err.status == 404:
            return 0, 0
        raise
    return (sts.status.ready_replicas or 0) if sts.status else 0, sts.spec.replicas or 0


def label_roles(core: client.CoreV1Api, names: BrokerNames, master_host: str | None) -> None:
    """Point the <name>-master Service at the master by labelling the Redis pods."""
    pods = core.list_namespaced_pod(
        names.namespace,
        label_selector=f"celeriac.io/broker={names.name},app.kubernetes.io/component=redis",
    )
    for pod in pods.items:
        meta = pod.metadata
        if meta is None or not meta.name:
            continue
        role = (
            "master"
            if names.redis_pod(int(meta.name.rsplit("-", 1)[1])) == master_host
            else "replica"
        )
        if (meta.labels or {}).get(ROLE_LABEL) != role:
            core.patch_namespaced_pod(
                meta.name, names.namespace, {"metadata": {"labels": {ROLE_LABEL: role}}}
            )


def reconcile_broker(api: client.ApiClient, body: dict[str, Any]) -> dict[str, Any]:
    """One reconcile; returns the status patch."""
    meta, status = body["metadata"], body.get("status") or {}
    generation = meta["generation"]
    now = reconcile.now()
    try:
        spec = WorkflowBrokerSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        return reconcile.broker_invalid(status, generation, err, now)
    owner = Owner("WorkflowBroker", meta["name"], meta["namespace"], meta["uid"])
    names = BrokerNames(owner.name, owner.namespace)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    conn = connection(owner.name, owner.namespace, spec)
    observed = _observe(api, core, apps, owner, names, spec, conn, status)
    return reconcile.broker_status(spec, conn, observed, status, generation, now)


def _observe(
    api: client.ApiClient,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    owner: Owner,
    names: BrokerNames,
    spec: WorkflowBrokerSpec,
    conn: Connection,
    status: dict[str, Any],
) -> Observed:
    ref = conn.password
    password: str | None = None
    if spec.auth.enabled and spec.mode != "external" and not spec.auth.existing_secret:
        ensure_generated_secret(core, owner, names.generated_secret)
    if ref:
        password = read_password(core, owner.namespace, ref.name, ref.key)
        if password is None:
            return Observed(
                problem=("SecretNotFound", f"Secret {ref.name} with key {ref.key} not found")
            )
    if spec.mode == "external":
        error = ping(conn, password)
        return Observed(
            master=None if error else "external", problem=("Unreachable", error) if error else None
        )
    facts = BrokerFacts(bootstrapped=bool(status.get("master")))
    applier = Applier(api)
    desired = render_broker(owner, spec, facts)
    for obj in desired:
        applier.apply(obj)
    applier.prune(
        owner.namespace,
        owner.uid,
        [k for k in RESOURCES if k[1] != "Secret"],
        {(o["kind"], o["metadata"]["name"]) for o in desired},
    )
    redis_ready, redis_wanted = statefulset_ready(apps, owner.namespace, names.redis)
    sentinel_ready = sentinel_wanted = 0
    master: str | None = None
    if spec.mode == "sentinel":
        sentinel_ready, sentinel_wanted = statefulset_ready(apps, owner.namespace, names.sentinel)
        master = sentinel_master(conn, password)
        if master:
            label_roles(core, names, master)
    elif redis_ready:
        master = names.redis_pod(0)
    return Observed(redis_ready, redis_wanted, sentinel_ready, sentinel_wanted, master)
