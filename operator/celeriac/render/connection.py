"""How Celery reaches a broker: URLs without passwords, the Sentinel master name
and the Secret holding the password. Published in WorkflowBroker status and used
to configure WorkerPools."""

from __future__ import annotations

from dataclasses import dataclass

from ..api.base import SecretKeySelector
from ..api.broker import SentinelSpec, WorkflowBrokerSpec
from .broker import BrokerNames, master_name, password_ref
from .redis_files import REDIS_PORT, SENTINEL_PORT


@dataclass(frozen=True)
class Connection:
    scheme: str  # redis, rediss or sentinel
    hosts: tuple[str, ...]  # host:port; Sentinels in sentinel mode
    master_name: str | None
    password: SecretKeySelector | None
    sentinel_password: SecretKeySelector | None
    broker_db: int
    results_db: int

    def url(self, db: int) -> str:
        """Celery URL without password: `;`-joined Sentinel URLs each carrying the db
        (kombu takes the db from the first one only, so all carry it)."""
        return ";".join(f"{self.scheme}://{h}/{db}" for h in self.hosts)

    @property
    def broker_url(self) -> str:
        return self.url(self.broker_db)

    @property
    def result_backend_url(self) -> str:
        return self.url(self.results_db)

    def status(self) -> dict[str, object]:
        out: dict[str, object] = {
            "brokerURL": self.broker_url,
            "resultBackendURL": self.result_backend_url,
        }
        if self.master_name:
            out["masterName"] = self.master_name
            out["sentinels"] = list(self.hosts)
        if self.password:
            out["secretRef"] = {"name": self.password.name, "key": self.password.key}
        return out


def connection(name: str, namespace: str, spec: WorkflowBrokerSpec) -> Connection:
    names = BrokerNames(name, namespace)
    tls = bool(spec.tls and spec.tls.enabled)
    dbs = spec.databases
    if spec.mode == "external" and spec.external:
        ext = spec.external
        if ext.url:
            scheme, rest = ext.url.split("://", 1)
            hostport = rest.split("/", 1)[0].rsplit("@", 1)[-1]
            return Connection(
                scheme, (hostport,), None, ext.password_secret, None, dbs.broker, dbs.results
            )
        return Connection(
            "sentinel",
            tuple(ext.sentinels or ()),
            ext.master_name,
            ext.password_secret,
            ext.sentinel_password_secret,
            dbs.broker,
            dbs.results,
        )
    ref = password_ref(names, spec)
    if spec.mode == "sentinel":
        sentinel = spec.sentinel or SentinelSpec()
        hosts = tuple(f"{names.sentinel_pod(i)}:{SENTINEL_PORT}" for i in range(sentinel.replicas))
        return Connection(
            "sentinel", hosts, master_name(names, spec), ref, ref, dbs.broker, dbs.results
        )
    return Connection(
        "rediss" if tls else "redis",
        (f"{names.fqdn(names.master)}:{REDIS_PORT}",),
        None,
        ref,
        None,
        dbs.broker,
        dbs.results,
    )
