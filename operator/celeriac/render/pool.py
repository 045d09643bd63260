"""WorkerPool rendering: a ConfigMap with the worker launcher and its settings, a
Deployment whose pods run it, and a PodDisruptionBudget. Pure: data in, objects out.

No password is rendered: the pods read them from the brokers' Secrets through
secretKeyRef, and the launcher builds the URLs at start (see workerfiles)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..api import WorkerPoolSpec, WorkflowBrokerSpec
from ..api.base import SecretKeySelector
from ..workerfiles import worker_files
from .broker import CONFIG_HASH, BrokerNames
from .connection import Connection, connection
from .meta import POOL_LABEL, Owner, disruption_budget, metadata, pod_metadata, pod_placement
from .redis_files import SENTINEL_PORT

CONFIG_DIR = "/etc/celeriac"
RUN_DIR = "/var/run/celeriac"
READY_FILE = f"{RUN_DIR}/ready"
SHUTDOWN_MARGIN_SECONDS = 30
PYWORKFLOW_QUEUES = ("pyworkflow.workflows", "pyworkflow.steps", "pyworkflow.schedules")
BUSY_KEY_PREFIX = "celeriac:busy:"
# Changes when a password Secret's content does, so the workers restart with it.
SECRETS_HASH = "celeriac.io/secrets-hash"


@dataclass(frozen=True)
class PoolBroker:
    """A broker as a pool sees it: its name and validated spec."""

    name: str
    spec: WorkflowBrokerSpec


@dataclass(frozen=True)
class PoolFacts:
    """What rendering needs from the cluster."""

    broker: PoolBroker
    results: PoolBroker | None  # None: no result backend
    replicas: int  # the Deployment's replicas to apply
    secrets_fingerprint: str = ""  # changes when a password Secret's content does


def names(pool: str) -> dict[str, str]:
    return {"deployment": pool, "config": f"{pool}-worker-config", "budget": pool}


def selector(pool: str) -> dict[str, str]:
    return {POOL_LABEL: pool, "app.kubernetes.io/component": "worker"}


def selector_string(pool: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector(pool).items()))


def cpu_cores(value: int | str | None) -> Decimal | None:
    if value is None:
        return None
    text = str(value)
    return Decimal(text[:-1]) / 1000 if text.endswith("m") else Decimal(text)


def concurrency(spec: WorkerPoolSpec) -> int:
    """The spec's, else the CPU limit rounded up (never the node's CPU count,
    which is what Celery would use inside a container), else 1."""
    if spec.concurrency:
        return spec.concurrency
    limit = cpu_cores((spec.resources.limits or {}).get("cpu") if spec.resources else None)
    return max(1, math.ceil(limit)) if limit else 1


def queues(spec: WorkerPoolSpec) -> list[str]:
    """Queues consumed; PyWorkflow's own three unless specific ones are named."""
    if spec.runtime == "pyworkflow":
        chosen = [q for q in spec.queues if q in PYWORKFLOW_QUEUES]
        return chosen or list(PYWORKFLOW_QUEUES)
    return list(spec.queues)


def grace_seconds(spec: WorkerPoolSpec) -> int:
    """Warm shutdown lets running tasks finish: the hard limit, then the soft
    shutdown, plus a margin for the process to exit."""
    return (spec.time_limit_seconds or 0) + spec.soft_shutdown_seconds + SHUTDOWN_MARGIN_SECONDS


def warnings(spec: WorkerPoolSpec) -> list[tuple[str, str]]:
    """(reason, message) for settings that work but lose or repeat tasks."""
    out: list[tuple[str, str]] = []
    longest = max(spec.time_limit_seconds or 0, spec.soft_time_limit_seconds or 0)
    if longest > spec.visibility_timeout_seconds:
        out.append(
            (
                "VisibilityTimeoutTooShort",
                f"spec.visibilityTimeoutSeconds ({spec.visibility_timeout_seconds}) is shorter "
                f"than the longest time limit ({longest}): tasks still running are redelivered "
                "and run twice",
            )
        )
    if spec.time_limit_seconds is None:
        out.append(
            (
                "NoTimeLimit",
                "spec.timeLimitSeconds is not set: tasks still running "
                f"{grace_seconds(spec)} s after a pod is asked to stop are killed",
            )
        )
    return out


def transport_key_options(spec: WorkerPoolSpec) -> dict[str, Any]:
    """The spec's key-naming transport options, under kombu's names."""
    keys = spec.queue_keys
    if keys is None:
        return {}
    options = {
        "global_keyprefix": keys.global_keyprefix,
        "priority_steps": keys.priority_steps,
        "sep": keys.sep,
    }
    return {k: v for k, v in options.items() if v is not None}


def worker_conf(spec: WorkerPoolSpec) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "worker_prefetch_multiplier": spec.prefetch_multiplier,
        "broker_connection_retry_on_startup": True,
    }
    if spec.acks_late is not None:
        conf["task_acks_late"] = spec.acks_late
        # Off (Celery 6 turns it on): on Redis an ack still lands after a reconnect,
        # so a running task may finish. Cancelling it at a failover lost it: the
        # cancel writes a RETRY state over the broken connection, fails, and Celery
        # then records the killed task as revoked and ACKS its message.
        conf["worker_cancel_long_running_tasks_on_connection_loss"] = False
    optional = {
        "task_soft_time_limit": spec.soft_time_limit_seconds,
        "task_time_limit": spec.time_limit_seconds,
        "worker_max_tasks_per_child": spec.max_tasks_per_child,
        "worker_max_memory_per_child": spec.max_memory_per_child_kb,
    }
    conf.update({k: v for k, v in optional.items() if v is not None})
    if spec.soft_shutdown_seconds:
        conf["worker_soft_shutdown_timeout"] = spec.soft_shutdown_seconds
        # Also when idle: held ETA tasks then go back to the queue before exit.
        conf["worker_enable_soft_shutdown_on_idle"] = True
    return conf


def worker_args(spec: WorkerPoolSpec) -> list[str]:
    """Arguments after `celery -A celeriac_worker worker` or `pyworkflow`;
    $(POD_NAME) is replaced by the launcher."""
    extra = list(spec.extra_args or [])
    n = concurrency(spec)
    if spec.runtime == "celery":
        return [
            "--hostname=celery@$(POD_NAME)",
            f"--queues={','.join(queues(spec))}",
            f"--concurrency={n}",
            f"--pool={spec.pool}",
            "--loglevel=INFO",
            *extra,
        ]
    flags = {
        "pyworkflow.workflows": "--workflow",
        "pyworkflow.steps": "--step",
        "pyworkflow.schedules": "--schedule",
    }
    chosen = queues(spec)
    args = ["--module", spec.app] if spec.app else []
    args += ["worker", "run", "--hostname=celery@$(POD_NAME)", f"--pool={spec.pool}"]
    if len(chosen) < len(PYWORKFLOW_QUEUES):
        args += [flags[q] for q in chosen]
    optional = {
        "--max-tasks-per-child": spec.max_tasks_per_child,
        "--time-limit": spec.time_limit_seconds,
        "--soft-time-limit": spec.soft_time_limit_seconds,
    }
    args += [f"{k}={v}" for k, v in optional.items() if v is not None]
    # PyWorkflow has no --concurrency of its own: it goes to Celery after `--`.
    return [*args, "--", f"--concurrency={n}", *extra]


def _broker_settings(conn: Connection, db: int, prefix: str, service: str | None) -> dict[str, Any]:
    hosts = [service] if service else list(conn.hosts)
    out: dict[str, Any] = {"scheme": conn.scheme, "hosts": hosts, "db": db}
    if conn.master_name:
        out["masterName"] = conn.master_name
    if conn.password:
        out["passwordEnv"] = f"{prefix}_PASSWORD"
    if conn.sentinel_password:
        out["sentinelPasswordEnv"] = f"{prefix}_SENTINEL_PASSWORD"
    return out


def _sentinel_service(broker: PoolBroker, namespace: str, spec: WorkerPoolSpec) -> str | None:
    """PyWorkflow reads one Sentinel address: the broker's Sentinel Service."""
    if spec.runtime != "pyworkflow" or broker.spec.mode != "sentinel":
        return None
    names = BrokerNames(broker.name, namespace)
    return f"{names.fqdn(names.sentinel)}:{SENTINEL_PORT}"


def settings(owner: Owner, spec: WorkerPoolSpec, facts: PoolFacts) -> dict[str, Any]:
    ns = owner.namespace
    broker = connection(facts.broker.name, ns, facts.broker.spec)
    out: dict[str, Any] = {
        "runtime": spec.runtime,
        "app": spec.app,
        "args": worker_args(spec),
        "conf": worker_conf(spec),
        "visibilityTimeout": spec.visibility_timeout_seconds,
        "brokerOptions": transport_key_options(spec),
        "readyFile": READY_FILE,
        "busyKey": f"{BUSY_KEY_PREFIX}{ns}/{owner.name}/",
        "broker": _broker_settings(
            broker,
            broker.broker_db,
            "CELERIAC_BROKER",
            _sentinel_service(facts.broker, ns, spec),
        ),
        "results": None,
    }
    if facts.results:
        results = connection(facts.results.name, ns, facts.results.spec)
        out["results"] = _broker_settings(
            results,
            results.results_db,
            "CELERIAC_RESULTS",
            _sentinel_service(facts.results, ns, spec),
        )
    return out


def _secret_env(name: str, ref: SecretKeySelector) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def password_env(owner: Owner, facts: PoolFacts) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    pairs = [("CELERIAC_BROKER", facts.broker)]
    if facts.results:
        pairs.append(("CELERIAC_RESULTS", facts.results))
    for prefix, broker in pairs:
        conn = connection(broker.name, owner.namespace, broker.spec)
        if conn.password:
            env.append(_secret_env(f"{prefix}_PASSWORD", conn.password))
        if conn.sentinel_password:
            env.append(_secret_env(f"{prefix}_SENTINEL_PASSWORD", conn.sentinel_password))
    return env


def password_secrets(owner: Owner, facts: PoolFacts) -> list[str]:
    """Secrets whose content the workers use (a change rolls them)."""
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in password_env(owner, facts)}
    return sorted(refs)


def render_pool(owner: Owner, spec: WorkerPoolSpec, facts: PoolFacts) -> list[dict[str, Any]]:
    n = names(owner.name)
    labels = {
        **selector(owner.name),
        "app.kubernetes.io/name": "celeriac-worker",
        "app.kubernetes.io/instance": owner.name,
    }
    data = {"settings.json": json.dumps(settings(owner, spec, facts), indent=2, sort_keys=True)}
    data.update(worker_files())
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, n["config"], labels),
        "data": data,
    }
    annotations = {
        CONFIG_HASH: hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    }
    if facts.secrets_fingerprint:  # unknown offline (`celeriac render` reads no Secret)
        annotations[SECRETS_HASH] = facts.secrets_fingerprint
    out = [config, _deployment(owner, spec, facts, labels, annotations)]
    budget = disruption_budget(owner, n["budget"], labels, selector(owner.name), spec.pod)
    return out + ([budget] if budget else [])


def _container(owner: Owner, spec: WorkerPoolSpec, facts: PoolFacts) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "CELERIAC_SETTINGS", "value": f"{CONFIG_DIR}/settings.json"},
        *password_env(owner, facts),
        *(spec.env or []),
    ]
    container: dict[str, Any] = {
        "name": "worker",
        "image": spec.image,
        "command": ["python3", f"{CONFIG_DIR}/celeriac_worker.py"],
        "env": env,
        "volumeMounts": [
            {"name": "celeriac", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "run", "mountPath": RUN_DIR},
        ],
        # Ready once the worker consumes (the launcher touches the file then);
        # python is the one program every worker image has.
        "readinessProbe": {
            "exec": {
                "command": [
                    "python3",
                    "-I",
                    "-S",
                    "-c",
                    f"import os,sys; sys.exit(not os.path.exists({READY_FILE!r}))",
                ]
            },
            "periodSeconds": 5,
            "failureThreshold": 1,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    if spec.env_from:
        container["envFrom"] = list(spec.env_from)
    if spec.resources:
        container["resources"] = spec.resources.model_dump(by_alias=True, exclude_none=True)
    return container


def _deployment(
    owner: Owner,
    spec: WorkerPoolSpec,
    facts: PoolFacts,
    labels: dict[str, str],
    annotations: dict[str, str],
) -> dict[str, Any]:
    sel = selector(owner.name)
    pod_spec: dict[str, Any] = {
        "containers": [_container(owner, spec, facts)],
        "volumes": [
            {"name": "celeriac", "configMap": {"name": names(owner.name)["config"]}},
            {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        ],
        "terminationGracePeriodSeconds": grace_seconds(spec),
        "enableServiceLinks": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        **pod_placement(spec.pod, sel),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(owner, names(owner.name)["deployment"], labels),
        "spec": {
            "replicas": facts.replicas,
            "selector": {"matchLabels": sel},
            # New workers first: capacity never dips during a rollout.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
            },
            "template": {
                "metadata": pod_metadata(spec.pod, labels, annotations),
                "spec": pod_spec,
            },
        },
    }
