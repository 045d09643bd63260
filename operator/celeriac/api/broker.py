"""WorkflowBroker: a Redis broker (standalone, Sentinel-managed, or external)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import (
    CommonStatus,
    Model,
    Name,
    PodSettings,
    Quantity,
    ResourceRequirements,
    SecretKeySelector,
    cel,
    immutable,
    with_rules,
)

DEFAULT_IMAGE = "redis:7.2"
EVICTION_POLICIES = (
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
)
# Directives the operator owns (or that would let a pod escape its topology or
# sandbox); spec.redis.config may not set them.
MANAGED_DIRECTIVES = (
    "bind",
    "port",
    "tls-port",
    "dir",
    "dbfilename",
    "appendonly",
    "appendfilename",
    "save",
    "replicaof",
    "slaveof",
    "masterauth",
    "masteruser",
    "requirepass",
    "replica-announce-ip",
    "replica-announce-port",
    "slave-announce-ip",
    "protected-mode",
    "daemonize",
    "supervised",
    "pidfile",
    "logfile",
    "unixsocket",
    "include",
    "loadmodule",
    "rename-command",
    "aclfile",
    "user",
    "enable-debug-command",
    "enable-module-command",
    "enable-protected-configs",
    "maxmemory",
    "maxmemory-policy",
    "min-replicas-to-write",
    "min-replicas-max-lag",
    "databases",
    "tls-cert-file",
    "tls-key-file",
    "tls-ca-cert-file",
    "tls-replication",
    "tls-auth-clients",
)
_managed_list = "[" + ", ".join(f"'{d}'" for d in MANAGED_DIRECTIVES) + "]"

Mode = Literal["standalone", "sentinel", "external"]
HostPort = Annotated[str, Field(max_length=261, pattern=r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$")]
MasterName = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]


class Persistence(Model):
    """How Redis keeps data across restarts."""

    type: Literal["none", "rdb", "aof"] = Field(
        "none",
        description="none: memory only; rdb: periodic snapshots; aof: append-only file "
        "(fsync every second). rdb and aof use a PersistentVolumeClaim per pod.",
    )
    size: Quantity = Field("1Gi", description="Size of each pod's volume.")
    storage_class_name: str | None = Field(
        None, max_length=253, description="StorageClass of the volumes; cluster default if unset."
    )


class RedisSpec(Model):
    """The Redis server pods."""

    model_config = with_rules(
        cel(
            "!has(self.maxmemoryPolicy) || self.maxmemoryPolicy == 'noeviction'"
            " || (has(self.allowEviction) && self.allowEviction)",
            "spec.redis.maxmemoryPolicy: eviction deletes Celery's queued tasks and "
            "kombu bindings; set spec.redis.allowEviction: true to use it anyway",
            ".maxmemoryPolicy",
        ),
        cel(
            "!has(self.minReplicasToWrite) || self.minReplicasToWrite <="
            " (has(self.replicas) ? self.replicas : 2)",
            "spec.redis.minReplicasToWrite must not exceed spec.redis.replicas, "
            "or every write would be refused",
            ".minReplicasToWrite",
        ),
    )

    image: str = Field(DEFAULT_IMAGE, min_length=1, max_length=512, description="Redis image.")
    replicas: int | None = Field(
        None,
        ge=0,
        le=8,
        description="Sentinel mode only: replicas besides the master (default 2).",
    )
    resources: ResourceRequirements | None = Field(None, description="Redis container resources.")
    persistence: Persistence = Field(default_factory=Persistence, description="Persistence.")
    maxmemory: Quantity | None = Field(
        None, description="Memory limit for data (maxmemory); unset means no limit."
    )
    maxmemory_policy: Literal[EVICTION_POLICIES] = Field(  # type: ignore[valid-type]
        "noeviction",
        description="What Redis does at maxmemory. noeviction (default) rejects writes; "
        "the others delete keys, which loses Celery tasks and queue bindings.",
    )
    allow_eviction: bool = Field(
        False, description="Explicitly accept an evicting maxmemoryPolicy (data loss)."
    )
    min_replicas_to_write: int | None = Field(
        None,
        ge=0,
        le=8,
        description="Refuse writes unless this many replicas are connected and in sync "
        "(min-replicas-to-write); narrows what a failover can lose.",
    )
    min_replicas_max_lag: int = Field(
        10, ge=1, le=3600, description="Seconds of replica lag tolerated by minReplicasToWrite."
    )
    config: dict[str, Annotated[str, Field(max_length=1024, pattern=r"^[^\r\n]*$")]] | None = Field(
        None,
        max_length=64,
        description="Extra redis.conf directives (lower-case names). Directives the "
        "operator manages (ports, replication, auth, persistence, memory) are rejected.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    # Iterate the fixed list, not the user's map: bounded CEL cost.
                    f"!{_managed_list}.exists(d, d in self)",
                    "spec.redis.config must not set directives the operator manages or that "
                    "are unsafe (" + ", ".join(MANAGED_DIRECTIVES) + "); use the spec.redis "
                    "fields instead",
                ),
                cel(
                    "self.all(k, k.matches('^[a-z][a-z0-9-]*$'))",
                    "spec.redis.config: directive names are lower-case words with dashes",
                ),
            ]
        },
    )


class SentinelSpec(Model):
    """The Sentinel group that watches the master and runs failovers."""

    model_config = with_rules(
        cel(
            "!has(self.quorum) || (self.quorum <= self.replicas"
            " && self.quorum * 2 > self.replicas)",
            "spec.sentinel.quorum must be a majority of spec.sentinel.replicas "
            "and not more than it",
            ".quorum",
        ),
        cel(
            "has(self.masterName) == has(oldSelf.masterName)"
            " && (!has(self.masterName) || self.masterName == oldSelf.masterName)",
            "spec.sentinel.masterName is immutable: workers and Sentinels know the master by it",
            ".masterName",
        ),
    )

    image: str | None = Field(
        None, max_length=512, description="Sentinel image; defaults to spec.redis.image."
    )
    replicas: int = Field(
        3,
        ge=3,
        le=9,
        description="Sentinel pods: odd, at least 3, so that a majority always exists.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self % 2 == 1", "spec.sentinel.replicas must be odd (3, 5, 7 or 9)")
            ]
        },
    )
    quorum: int | None = Field(
        None,
        ge=2,
        le=9,
        description="Sentinels that must agree the master is down (default majority).",
    )
    master_name: MasterName | None = Field(
        None,
        description="Sentinel master name; default <namespace>-<name>, unique per broker. "
        "Immutable.",
    )
    down_after_milliseconds: int = Field(
        5000, ge=500, le=600000, description="How long the master may not answer before it is down."
    )
    failover_timeout: int = Field(
        60000, ge=1000, le=3600000, description="Sentinel failover-timeout in milliseconds."
    )
    parallel_syncs: int = Field(
        1, ge=1, le=8, description="Replicas that resync with a new master at the same time."
    )
    resources: ResourceRequirements | None = Field(
        None, description="Sentinel container resources."
    )


class AuthSpec(Model):
    """Password protection of Redis and Sentinel."""

    model_config = with_rules(
        cel(
            "self.enabled || !has(self.existingSecret)",
            "spec.auth.existingSecret requires spec.auth.enabled: true",
            ".existingSecret",
        )
    )

    enabled: bool = Field(
        True, description="Require a password (requirepass, sentinel requirepass)."
    )
    existing_secret: SecretKeySelector | None = Field(
        None,
        description="Secret holding the password. If unset the operator generates one into "
        "the Secret <name>-auth, which it owns and keeps.",
    )
    acl_user: str | None = Field(
        None, max_length=128, pattern=r"^[A-Za-z0-9_-]+$", description="ACL user for clients."
    )


class TLSSpec(Model):
    """TLS for client and replication traffic."""

    model_config = with_rules(
        cel(
            "!self.enabled || has(self.secretName)",
            "spec.tls.secretName is required when spec.tls.enabled is true",
            ".secretName",
        )
    )

    enabled: bool = Field(False, description="Serve TLS.")
    secret_name: Name | None = Field(
        None, description="Secret with tls.crt, tls.key and ca.crt (cert-manager format)."
    )


class Databases(Model):
    """Redis database numbers used by Celery."""

    broker: int = Field(0, ge=0, le=15, description="Database of the broker queues.")
    results: int = Field(1, ge=0, le=15, description="Database of the result backend.")


class ExternalSpec(Model):
    """A broker that runs elsewhere; the operator only observes and publishes it."""

    model_config = with_rules(
        cel(
            "has(self.url) != (has(self.sentinels) && size(self.sentinels) > 0)",
            "spec.external needs exactly one of url or sentinels",
        ),
        cel(
            "!has(self.sentinels) || size(self.sentinels) == 0 || has(self.masterName)",
            "spec.external.masterName is required with spec.external.sentinels",
            ".masterName",
        ),
    )

    url: str | None = Field(
        None,
        max_length=1024,
        pattern=r"^rediss?://[^:@/\s]*@?[^@\s]+$",
        description="redis:// or rediss:// URL without a password (the password comes "
        "from passwordSecret).",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!self.matches('^rediss?://[^/@]*:[^/@]*@')",
                    "spec.external.url must not contain a password; use "
                    "spec.external.passwordSecret",
                )
            ]
        },
    )
    sentinels: list[HostPort] | None = Field(
        None, max_length=16, description="Sentinel addresses (host:port)."
    )
    master_name: MasterName | None = Field(None, description="Sentinel master name.")
    password_secret: SecretKeySelector | None = Field(
        None, description="Secret with the Redis password."
    )
    sentinel_password_secret: SecretKeySelector | None = Field(
        None, description="Secret with the Sentinel password, if Sentinels require one."
    )


class WorkflowBrokerSpec(Model):
    """Desired state of a WorkflowBroker."""

    model_config = with_rules(
        cel(
            "self.mode != 'external' || has(self.external)",
            "spec.external is required when spec.mode is external",
            ".external",
        ),
        cel(
            "self.mode == 'external' || !has(self.external)",
            "spec.external is only allowed when spec.mode is external",
            ".external",
        ),
        cel(
            "self.mode != 'external' || (!has(self.redis) && !has(self.sentinel)"
            " && !has(self.pod))",
            "spec.redis, spec.sentinel and spec.pod configure pods; an external broker has none",
        ),
        cel(
            "self.mode == 'sentinel' || !has(self.sentinel)",
            "spec.sentinel is only allowed when spec.mode is sentinel",
            ".sentinel",
        ),
        cel(
            "self.mode == 'sentinel' || !has(self.redis) || !has(self.redis.replicas)",
            "spec.redis.replicas is only allowed when spec.mode is sentinel",
            ".redis.replicas",
        ),
    )

    mode: Mode = Field(
        "standalone",
        description="standalone: one Redis pod; sentinel: a master, replicas and a Sentinel "
        "group; external: a broker that runs elsewhere. Immutable.",
        json_schema_extra=immutable("spec.mode"),
    )
    redis: RedisSpec | None = Field(None, description="Redis pods (standalone and sentinel).")
    sentinel: SentinelSpec | None = Field(None, description="Sentinel group (sentinel mode).")
    auth: AuthSpec = Field(default_factory=AuthSpec, description="Password protection.")
    tls: TLSSpec | None = Field(None, description="TLS (off by default).")
    databases: Databases = Field(default_factory=Databases, description="Database numbers.")
    external: ExternalSpec | None = Field(None, description="External broker (external mode).")
    pod: PodSettings | None = Field(None, description="Placement and pod settings.")


class MasterStatus(Model):
    pod: str | None = Field(None, description="Pod that is master now.")
    address: str | None = Field(None, description="Address the Sentinels announce.")
    since: str | None = Field(None, description="When it became master (RFC 3339).")


class ReplicaStatus(Model):
    pod: str = Field(description="Replica pod.")
    address: str | None = Field(None, description="Announced address.")
    link_up: bool = Field(False, description="Replication link to the master is up.")
    offset_lag: int | None = Field(None, description="Bytes behind the master.")


class SentinelsStatus(Model):
    known: int = Field(0, description="Sentinels that know the master.")
    quorum_ok: bool = Field(False, description="SENTINEL CKQUORUM passed.")


class FailoverStatus(Model):
    count: int = Field(0, description="Failovers seen.")
    last: str | None = Field(None, description="Time of the last failover (RFC 3339).")


class ConnectionStatus(Model):
    """What clients need; never a password."""

    broker_url: str | None = Field(
        None, alias="brokerURL", description="Celery broker URL without the password."
    )
    result_backend_url: str | None = Field(
        None,
        alias="resultBackendURL",
        description="Celery result backend URL without the password.",
    )
    master_name: str | None = Field(None, description="Sentinel master name.")
    sentinels: list[str] | None = Field(None, description="Sentinel addresses.")
    secret_ref: SecretKeySelector | None = Field(
        None, description="Secret and key to read the password from."
    )


class WorkflowBrokerStatus(CommonStatus):
    """Observed state of a WorkflowBroker."""

    master: MasterStatus | None = Field(None, description="Current master.")
    replicas: list[ReplicaStatus] | None = Field(None, description="Replicas and their lag.")
    sentinels: SentinelsStatus | None = Field(None, description="Sentinel group health.")
    failovers: FailoverStatus | None = Field(None, description="Failover history.")
    connection: ConnectionStatus | None = Field(None, description="How workers connect.")
