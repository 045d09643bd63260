"""WorkflowBroker -> ConfigMaps, Services, StatefulSets and PodDisruptionBudgets."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..api.base import ResourceRequirements, SecretKeySelector
from ..api.broker import RedisSpec, SentinelSpec, WorkflowBrokerSpec
from . import redis_files as files
from .meta import (
    BROKER_LABEL,
    CLUSTER_DOMAIN,
    ROLE_LABEL,
    Owner,
    disruption_budget,
    metadata,
    pod_metadata,
    pod_placement,
)

CONFIG_HASH = "celeriac.io/config-hash"
MAX_MASTER_NAME = 64
MAX_REDIS_PODS = 9  # the master and at most 8 replicas (spec.redis.replicas <= 8)


@dataclass(frozen=True)
class BrokerNames:
    """Every name derived from the broker's; one place so nothing drifts."""

    name: str
    namespace: str

    @property
    def redis(self) -> str:
        return f"{self.name}-redis"

    @property
    def redis_headless(self) -> str:
        return f"{self.name}-redis-headless"

    @property
    def sentinel(self) -> str:
        return f"{self.name}-sentinel"

    @property
    def sentinel_headless(self) -> str:
        return f"{self.name}-sentinel-headless"

    @property
    def master(self) -> str:
        return f"{self.name}-master"

    @property
    def config(self) -> str:
        return f"{self.name}-broker-config"

    @property
    def topology(self) -> str:
        return f"{self.name}-topology"

    @property
    def generated_secret(self) -> str:
        return f"{self.name}-auth"

    def fqdn(self, host: str) -> str:
        return f"{host}.{self.namespace}.svc.{CLUSTER_DOMAIN}"

    def redis_pod(self, i: int) -> str:
        return self.fqdn(f"{self.redis}-{i}.{self.redis_headless}")

    def sentinel_pod(self, i: int) -> str:
        return self.fqdn(f"{self.sentinel}-{i}.{self.sentinel_headless}")


def master_name(names: BrokerNames, spec: WorkflowBrokerSpec) -> str:
    """Sentinel master name: the user's, or <namespace>.<name>, unique per broker
    (shared names merge different brokers' Sentinel groups)."""
    if spec.sentinel and spec.sentinel.master_name:
        return spec.sentinel.master_name
    candidate = f"{names.namespace}.{names.name}"
    if len(candidate) <= MAX_MASTER_NAME:
        return candidate
    digest = hashlib.sha256(candidate.encode()).hexdigest()[:8]
    return f"{candidate[: MAX_MASTER_NAME - 9]}-{digest}"


def password_ref(names: BrokerNames, spec: WorkflowBrokerSpec) -> SecretKeySelector | None:
    if not spec.auth.enabled:
        return None
    return spec.auth.existing_secret or SecretKeySelector(name=names.generated_secret)


def redis_replicas(spec: WorkflowBrokerSpec) -> int:
    """Redis pods: the master plus replicas in sentinel mode, one otherwise."""
    if spec.mode != "sentinel":
        return 1
    replicas = (spec.redis or RedisSpec()).replicas
    return 1 + (2 if replicas is None else replicas)


@dataclass(frozen=True)
class BrokerFacts:
    """What the operator observed that changes the rendering."""

    bootstrapped: bool = False  # a master was seen once: never bootstrap pod 0 again
    redis_pods: int | None = None  # hold the Redis pod count (a scale-down waits for a handover)


def render_broker(
    owner: Owner, spec: WorkflowBrokerSpec, facts: BrokerFacts
) -> list[dict[str, Any]]:
    if spec.mode == "external":
        return []
    names = BrokerNames(owner.name, owner.namespace)
    redis = spec.redis or RedisSpec()
    sentinel_mode = spec.mode == "sentinel"
    sentinel = spec.sentinel or SentinelSpec()
    config = _config_map(owner, names, spec, redis, sentinel)
    data = config["data"]
    # Each StatefulSet rolls only for the files its pods read: a Redis setting
    # must not restart the Sentinels as well (one failover per change at most).
    redis_hash = _hash({k: v for k, v in data.items() if not k.startswith("sentinel")})
    sentinel_hash = _hash({k: v for k, v in data.items() if not k.startswith("redis")})
    env = _env(names, spec, sentinel)
    objects: list[dict[str, Any]] = [
        config,
        _topology(owner, names, facts),
        _headless(owner, names.redis_headless, _labels(names, "redis"), files.REDIS_PORT, "redis"),
        _service(
            owner,
            names.master,
            _labels(names, "redis"),
            {**_selector(names, "redis"), ROLE_LABEL: "master"},
            files.REDIS_PORT,
            "redis",
        ),
        _redis_statefulset(owner, names, spec, redis, env, redis_hash, facts.redis_pods),
    ]
    if sentinel_mode:
        labels = _labels(names, "sentinel")
        objects += [
            _headless(owner, names.sentinel_headless, labels, files.SENTINEL_PORT, "sentinel"),
            _service(
                owner,
                names.sentinel,
                labels,
                _selector(names, "sentinel"),
                files.SENTINEL_PORT,
                "sentinel",
            ),
            _sentinel_statefulset(owner, names, spec, sentinel, env, sentinel_hash),
        ]
    for component in ("redis", "sentinel") if sentinel_mode else ("redis",):
        pdb = disruption_budget(
            owner,
            f"{owner.name}-{component}",
            _labels(names, component),
            _selector(names, component),
            spec.pod,
        )
        if pdb:
            objects.append(pdb)
    return objects


def _hash(data: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _selector(names: BrokerNames, component: str) -> dict[str, str]:
    return {BROKER_LABEL: names.name, "app.kubernetes.io/component": component}


def _labels(names: BrokerNames, component: str) -> dict[str, str]:
    return {
        **_selector(names, component),
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/instance": names.name,
    }


def _config_map(
    owner: Owner,
    names: BrokerNames,
    spec: WorkflowBrokerSpec,
    redis: RedisSpec,
    sentinel: SentinelSpec,
) -> dict[str, Any]:
    sentinel_mode = spec.mode == "sentinel"
    data = {
        "redis.conf": files.redis_conf(redis, sentinel_mode),
        "common.sh": files.COMMON_SH,
        "redis-start.sh": files.REDIS_START_SH,
        "redis-ready.sh": files.REDIS_READY_SH,
        "redis-alive.sh": files.REDIS_ALIVE_SH,
        "redis-prestop.sh": files.REDIS_PRESTOP_SH,
    }
    if sentinel_mode:
        data |= {
            "sentinel.conf": files.sentinel_conf(),
            "sentinel-master.conf": files.sentinel_master_conf(master_name(names, spec), sentinel),
            "sentinel-start.sh": files.SENTINEL_START_SH,
            "sentinel-ready.sh": files.SENTINEL_READY_SH,
        }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, names.config, _labels(names, "redis")),
        "data": data,
    }


def _topology(owner: Owner, names: BrokerNames, facts: BrokerFacts) -> dict[str, Any]:
    # Read by the pods at start: pod 0 may bootstrap as master only while "allowed".
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, names.topology, _labels(names, "redis")),
        "data": {"bootstrap": "done" if facts.bootstrapped else "allowed"},
    }


def _headless(
    owner: Owner, name: str, labels: dict[str, str], port: int, port_name: str
) -> dict[str, Any]:
    # Not-ready pods must resolve too: a starting replica finds its peers by name.
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, name, labels),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {k: labels[k] for k in (BROKER_LABEL, "app.kubernetes.io/component")},
            "ports": [{"name": port_name, "port": port, "targetPort": port}],
        },
    }


def _service(
    owner: Owner,
    name: str,
    labels: dict[str, str],
    selector: dict[str, str],
    port: int,
    port_name: str,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, name, labels),
        "spec": {
            "selector": selector,
            "ports": [{"name": port_name, "port": port, "targetPort": port}],
        },
    }


def _env(
    names: BrokerNames, spec: WorkflowBrokerSpec, sentinel: SentinelSpec
) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "MODE", "value": spec.mode},
        {"name": "CLUSTER_DOMAIN", "value": CLUSTER_DOMAIN},
        {"name": "REDIS_STATEFULSET", "value": names.redis},
        {"name": "REDIS_HEADLESS", "value": names.redis_headless},
        # An upper bound, not the count: scaling must not change the pod templates
        # (that would restart every pod); absent pods simply do not resolve.
        {"name": "REDIS_MAX_PODS", "value": str(MAX_REDIS_PODS)},
    ]
    if spec.mode == "sentinel":
        env += [
            {"name": "MASTER_NAME", "value": master_name(names, spec)},
            {"name": "SENTINEL_HEADLESS", "value": names.sentinel_headless},
            {
                "name": "SENTINEL_HOSTS",
                "value": " ".join(names.sentinel_pod(i) for i in range(sentinel.replicas)),
            },
            {"name": "QUORUM", "value": str(files.quorum(sentinel))},
            {"name": "DOWN_AFTER_MS", "value": str(sentinel.down_after_milliseconds)},
            {"name": "FAILOVER_TIMEOUT_MS", "value": str(sentinel.failover_timeout)},
        ]
    ref = password_ref(names, spec)
    if ref:
        secret = {"valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        env += [{"name": "REDIS_PASSWORD", **secret}, {"name": "REDISCLI_AUTH", **secret}]
    return env


def _exec(script: str) -> dict[str, Any]:
    return {"exec": {"command": ["sh", f"/config/{script}"]}}


def _resources(resources: ResourceRequirements | None) -> dict[str, Any]:
    return resources.model_dump(by_alias=True, exclude_none=True) if resources else {}


_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
_POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 999,
    "runAsGroup": 999,
    "fsGroup": 999,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _statefulset(
    owner: Owner,
    name: str,
    headless: str,
    component: str,
    names: BrokerNames,
    spec: WorkflowBrokerSpec,
    replicas: int,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    config_hash: str,
    extra_labels: dict[str, str],
    claims: list[dict[str, Any]],
) -> dict[str, Any]:
    labels = _labels(names, component)
    selector = _selector(names, component)
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "terminationGracePeriodSeconds": 60,
        "enableServiceLinks": False,
        "securityContext": _POD_SECURITY,
        **pod_placement(spec.pod, selector),
    }
    sts: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(owner, name, labels),
        "spec": {
            "replicas": replicas,
            "serviceName": headless,
            # The start scripts coordinate; no need to wait for pods one by one.
            "podManagementPolicy": "Parallel",
            # Sentinel mode: the operator restarts pods itself, in a safe order.
            "updateStrategy": {"type": "OnDelete" if spec.mode == "sentinel" else "RollingUpdate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": pod_metadata(
                    spec.pod, {**labels, **extra_labels}, {CONFIG_HASH: config_hash}
                ),
                "spec": pod_spec,
            },
        },
    }
    if claims:
        sts["spec"]["volumeClaimTemplates"] = claims
    return sts


def _redis_statefulset(
    owner: Owner,
    names: BrokerNames,
    spec: WorkflowBrokerSpec,
    redis: RedisSpec,
    env: list[dict[str, Any]],
    config_hash: str,
    pods: int | None,
) -> dict[str, Any]:
    volumes = [
        {"name": "config", "configMap": {"name": names.config, "defaultMode": 0o755}},
        {"name": "topology", "configMap": {"name": names.topology}},
        # The runtime config holds the password: memory only, never a ConfigMap.
        {"name": "run", "emptyDir": {"medium": "Memory"}},
        {"name": "tmp", "emptyDir": {}},
    ]
    claims: list[dict[str, Any]] = []
    if redis.persistence.type == "none":
        volumes.append({"name": "data", "emptyDir": {}})
    else:
        claim: dict[str, Any] = {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": redis.persistence.size}},
            },
        }
        if redis.persistence.storage_class_name:
            claim["spec"]["storageClassName"] = redis.persistence.storage_class_name
        claims.append(claim)
    container = {
        "name": "redis",
        "image": redis.image,
        "command": ["sh", "/config/redis-start.sh"],
        "env": env,
        "ports": [{"name": "redis", "containerPort": files.REDIS_PORT}],
        "readinessProbe": {
            **_exec("redis-ready.sh"),
            "periodSeconds": 2,
            "timeoutSeconds": 3,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            **_exec("redis-alive.sh"),
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 6,
        },
        "lifecycle": {"preStop": _exec("redis-prestop.sh")},
        "resources": _resources(redis.resources),
        "securityContext": _SECURITY,
        "volumeMounts": [
            {"name": "config", "mountPath": "/config"},
            {"name": "topology", "mountPath": "/topology"},
            {"name": "run", "mountPath": "/run/redis"},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "data", "mountPath": "/data"},
        ],
    }
    role = {ROLE_LABEL: "master"} if spec.mode == "standalone" else {}
    return _statefulset(
        owner,
        names.redis,
        names.redis_headless,
        "redis",
        names,
        spec,
        redis_replicas(spec) if pods is None else pods,
        container,
        volumes,
        config_hash,
        role,
        claims,
    )


def _sentinel_statefulset(
    owner: Owner,
    names: BrokerNames,
    spec: WorkflowBrokerSpec,
    sentinel: SentinelSpec,
    env: list[dict[str, Any]],
    config_hash: str,
) -> dict[str, Any]:
    volumes = [
        {"name": "config", "configMap": {"name": names.config, "defaultMode": 0o755}},
        {"name": "topology", "configMap": {"name": names.topology}},
        {"name": "run", "emptyDir": {"medium": "Memory"}},
        {"name": "tmp", "emptyDir": {}},
    ]
    container = {
        "name": "sentinel",
        "image": sentinel.image or (spec.redis or RedisSpec()).image,
        "command": ["sh", "/config/sentinel-start.sh"],
        "env": env,
        "ports": [{"name": "sentinel", "containerPort": files.SENTINEL_PORT}],
        "readinessProbe": {**_exec("sentinel-ready.sh"), "periodSeconds": 2, "timeoutSeconds": 3},
        "livenessProbe": {
            "tcpSocket": {"port": files.SENTINEL_PORT},
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "resources": _resources(sentinel.resources),
        "securityContext": _SECURITY,
        "volumeMounts": [
            {"name": "config", "mountPath": "/config"},
            {"name": "topology", "mountPath": "/topology"},
            {"name": "run", "mountPath": "/run/sentinel"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    return _statefulset(
        owner,
        names.sentinel,
        names.sentinel_headless,
        "sentinel",
        names,
        spec,
        sentinel.replicas,
        container,
        volumes,
        config_hash,
        {},
        [],
    )
