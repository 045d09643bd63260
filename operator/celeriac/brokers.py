"""WorkflowBroker reconcile: the I/O around the pure render and status functions
(read Secrets and StatefulSets, apply, ask the Sentinels who is master)."""

from __future__ import annotations

import logging
import secrets
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from . import reconcile
from .api import WorkflowBrokerSpec
from .apply import RESOURCES, Applier
from .kube import secret_value
from .observe import events
from .observe.topology import (
    SentinelEvent,
    Topology,
    read_sentinel,
    read_topology,
    sentinel_reset,
    stale_entries,
)
from .render.broker import BrokerFacts, BrokerNames, redis_replicas, render_broker
from .render.connection import Connection, connection
from .render.meta import ROLE_LABEL, Owner

log = logging.getLogger("celeriac.broker")
PASSWORD_ALPHABET = string.ascii_letters + string.digits  # URL- and config-safe
Emit = Callable[[str, str, str], None]  # (type, reason, message) -> a Kubernetes Event


@dataclass(frozen=True)
class Observed:
    """What one look at the cluster and the broker showed."""

    redis_ready: int = 0
    redis_wanted: int = 0
    sentinel_ready: int = 0
    sentinel_wanted: int = 0
    master: str | None = None  # host the Sentinels (or the standalone pod) report
    problem: tuple[str, str] | None = None  # (reason, message) that blocks progress
    topology: Topology | None = None  # sentinel mode: the Sentinels' view


def read_password(core: client.CoreV1Api, namespace: str, name: str, key: str) -> str | None:
    try:
        secret = core.read_namespaced_secret(name, namespace)
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return secret_value(secret.data, key) or None  # an empty value is no password


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


def ping(conn: Connection, password: str | None) -> str | None:
    """None when the broker answers, else why not (for external brokers)."""
    if conn.master_name:
        if read_topology(conn, password):
            return None
        return f"no Sentinel of {', '.join(conn.hosts)} knows {conn.master_name}"
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


def reconcile_broker(api: client.ApiClient, body: dict[str, Any], emit: Emit) -> dict[str, Any]:
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
    observed = _observe(api, core, apps, owner, names, spec, conn, status, emit)
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
    emit: Emit,
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
        sentinel_ref = conn.sentinel_password
        if conn.master_name and sentinel_ref and sentinel_ref != ref:
            password = read_password(core, owner.namespace, sentinel_ref.name, sentinel_ref.key)
            if password is None:
                missing = f"Secret {sentinel_ref.name} with key {sentinel_ref.key} not found"
                return Observed(problem=("SecretNotFound", missing))
        error = ping(conn, password)  # Sentinels are asked with the Sentinel password
        return Observed(
            master=None if error else "external", problem=("Unreachable", error) if error else None
        )
    topology = read_topology(conn, password) if spec.mode == "sentinel" else None
    plan = None
    if topology:
        _, current = statefulset_ready(apps, owner.namespace, names.redis)
        plan = reconcile.plan_redis_scale(
            current or redis_replicas(spec),
            redis_replicas(spec),
            reconcile.ordinal_of(topology.master),
        )
        prepare_scale_down(names, conn, password, plan, emit)
    facts = BrokerFacts(
        bootstrapped=bool(status.get("master")), redis_pods=plan.apply_pods if plan else None
    )
    applier = Applier(api)
    desired = render_broker(owner, spec, facts)
    for obj in desired:
        applier.apply(obj)
    applier.prune(
        owner.namespace,
        owner.uid,
        [k for k in RESOURCES if k[1] not in ("Secret", "Pod")],
        {(o["kind"], o["metadata"]["name"]) for o in desired},
    )
    redis_ready, redis_wanted = statefulset_ready(apps, owner.namespace, names.redis)
    sentinel_ready = sentinel_wanted = 0
    master: str | None = None
    if spec.mode == "sentinel":
        sentinel_ready, sentinel_wanted = statefulset_ready(apps, owner.namespace, names.sentinel)
        if topology:
            master = topology.master
            label_roles(core, names, master)
            handing_over = plan is not None and plan.failover
            if sentinel_ready == sentinel_wanted == len(conn.hosts) and not handing_over:
                forget_stale(core, names, conn, password, emit)
            roll(core, apps, names, reconcile.pod_of(master), emit)
    elif redis_ready:
        master = names.redis_pod(0)
    return Observed(
        redis_ready, redis_wanted, sentinel_ready, sentinel_wanted, master, topology=topology
    )


def pod_states(
    core: client.CoreV1Api, apps: client.AppsV1Api, ns: str, sts: str, component: str, broker: str
) -> list[reconcile.PodState]:
    status = apps.read_namespaced_stateful_set(sts, ns).status
    revision = status.update_revision if status else None
    pods = core.list_namespaced_pod(
        ns, label_selector=f"celeriac.io/broker={broker},app.kubernetes.io/component={component}"
    ).items
    out = []
    for pod in pods:
        meta = pod.metadata
        if meta is None or not meta.name:
            continue
        conditions = (pod.status and pod.status.conditions) or []
        ready = not meta.deletion_timestamp and any(
            c.type == "Ready" and c.status == "True" for c in conditions
        )
        current = (meta.labels or {}).get("controller-revision-hash") == revision
        out.append(reconcile.PodState(meta.name, ready, current))
    return out


def roll(
    core: client.CoreV1Api, apps: client.AppsV1Api, names: BrokerNames, master_pod: str, emit: Emit
) -> None:
    """Advance a rollout by at most one pod (the StatefulSets use OnDelete)."""
    ns = names.namespace
    victim = reconcile.next_to_restart(
        pod_states(core, apps, ns, names.redis, "redis", names.name),
        pod_states(core, apps, ns, names.sentinel, "sentinel", names.name),
        master_pod,
    )
    if victim:
        emit("Normal", "RollingRestart", f"restarting {victim} for the new configuration")
        core.delete_namespaced_pod(victim, ns)


def prepare_scale_down(
    names: BrokerNames,
    conn: Connection,
    password: str | None,
    plan: reconcile.ScalePlan,
    emit: Emit,
) -> None:
    """Pods about to be removed get replica-priority 0 so no failover promotes them;
    if the master is one of them, the Sentinels hand over to a survivor first."""
    for ordinal in plan.doomed:
        try:
            with redis.Redis(
                host=names.redis_pod(ordinal),
                port=6379,
                password=password,
                socket_timeout=1,
                socket_connect_timeout=1,
            ) as r:
                r.config_set("replica-priority", 0)
        except (redis.RedisError, OSError):
            pass  # gone already, or not up: it cannot be promoted either
    if plan.failover:
        for hostport in conn.hosts:
            host, port = hostport.rsplit(":", 1)
            try:
                with redis.Redis(
                    host=host,
                    port=int(port),
                    password=password,
                    socket_timeout=2,
                    socket_connect_timeout=1,
                ) as s:
                    s.sentinel_failover(conn.master_name)
                emit("Normal", "PlannedFailover", "master is in the scale-down; handing over")
                return
            except (redis.RedisError, OSError):
                continue


def forget_stale(
    core: client.CoreV1Api, names: BrokerNames, conn: Connection, password: str | None, emit: Emit
) -> None:
    """SENTINEL RESET one Sentinel that remembers pods which no longer exist (after
    a scale-down or a replaced pod); one per reconcile, so the others keep watching
    while it rediscovers the group. Pods that still exist (about to go, or not yet
    shrunk away during a handover) are not stale: resetting for them would make the
    Sentinels forget the replicas a handover needs, again and again."""
    pods = core.list_namespaced_pod(
        names.namespace,
        label_selector=f"celeriac.io/broker={names.name},app.kubernetes.io/component=redis",
    ).items
    ordinals = [reconcile.ordinal_of(str(p.metadata.name)) for p in pods if p.metadata]
    redis_hosts = [names.redis_pod(i) for i in ordinals if i is not None]
    sentinel_hosts = [h.rsplit(":", 1)[0] for h in conn.hosts]
    views = {h: read_sentinel(h, password, conn.master_name or "") for h in conn.hosts}
    masters = Counter(v.master for v in views.values() if v)
    consensus, votes = masters.most_common(1)[0] if masters else (None, 0)
    if consensus is None or votes <= len(conn.hosts) // 2:
        return  # no majority view: leave the Sentinels alone
    for hostport, view in views.items():
        if view and view.master != consensus and view.master not in redis_hosts:
            # It follows a master that is gone and knows no one to hear the others'
            # announcements from: a new pod asks the others and follows the majority.
            pod = hostport.split(".")[0]
            core.delete_namespaced_pod(pod, names.namespace)
            emit("Warning", "SentinelRestarted", f"{pod} still followed a gone master")
            return
    for hostport, view in views.items():
        stale = (
            view and view.master == consensus and stale_entries(view, redis_hosts, sentinel_hosts)
        )
        if stale:
            sentinel_reset(hostport, password, conn.master_name or "")
            emit(
                "Normal",
                "SentinelReset",
                f"{hostport.split('.')[0]} forgot {', '.join(sorted(stale))}",
            )
            return


def follow_sentinel_events(
    api: client.ApiClient,
    body: dict[str, Any],
    stopped: Callable[[], bool],
    idle: Callable[[float], None],
    emit: Emit,
) -> None:
    """Runs as a daemon per sentinel-mode broker: moves the master role label and
    status.master as soon as the Sentinels announce +switch-master."""
    meta = body["metadata"]
    spec = WorkflowBrokerSpec.model_validate(body.get("spec") or {})
    names = BrokerNames(meta["name"], meta["namespace"])
    conn = connection(names.name, names.namespace, spec)
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)

    def password() -> str | None:
        ref = conn.password
        return read_password(core, names.namespace, ref.name, ref.key) if ref else None

    def on_event(event: SentinelEvent) -> None:
        if event.kind == "+switch-master" and event.new_master:
            label_roles(core, names, event.new_master)
            pod = reconcile.pod_of(event.new_master)
            now = reconcile.now()
            current: dict[str, Any] = custom.get_namespaced_custom_object(  # type: ignore[assignment]
                "celeriac.io", "v1alpha1", names.namespace, "workflowbrokers", names.name
            )
            status = current.get("status") or {}
            if (status.get("master") or {}).get("pod") != pod:
                count = int((status.get("failovers") or {}).get("count", 0)) + 1
                custom.patch_namespaced_custom_object_status(
                    "celeriac.io",
                    "v1alpha1",
                    names.namespace,
                    "workflowbrokers",
                    names.name,
                    {
                        "status": {
                            "master": {"pod": pod, "address": event.new_master, "since": now},
                            "failovers": {"count": count, "last": now},
                        }
                    },
                )
            emit("Normal", "Failover", f"Sentinels promoted {pod}")
        elif event.kind == "+odown":
            emit("Warning", "MasterDown", "Sentinels agree the master is down")
        elif event.kind == "-failover-abort-no-good-slave":
            emit("Warning", "FailoverAborted", "no replica was fit to become master")

    events.follow(conn, password, stopped, on_event, idle)
