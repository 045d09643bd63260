"""WorkerPool rendering: pure, from specs to objects."""

from __future__ import annotations

import json
from typing import Any

import pytest

from celeriac.api import WorkerPoolSpec, WorkflowBrokerSpec
from celeriac.render.meta import Owner
from celeriac.render.pool import (
    PoolBroker,
    PoolFacts,
    concurrency,
    grace_seconds,
    render_pool,
    warnings,
    worker_args,
)

OWNER = Owner("WorkerPool", "w", "ns", "uid-1")
SENTINEL = PoolBroker("b", WorkflowBrokerSpec.model_validate({"mode": "sentinel"}))
STANDALONE = PoolBroker("s", WorkflowBrokerSpec.model_validate({"mode": "standalone"}))
BASE = {"brokerRef": {"name": "b"}, "image": "img:1", "app": "proj.celery:app"}


def pool(**spec: Any) -> WorkerPoolSpec:
    return WorkerPoolSpec.model_validate({**BASE, **spec})


def objects(spec: WorkerPoolSpec, facts: PoolFacts | None = None) -> dict[str, dict[str, Any]]:
    out = render_pool(OWNER, spec, facts or PoolFacts(SENTINEL, SENTINEL, 2))
    return {o["kind"]: o for o in out}


def settings_of(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(objs["ConfigMap"]["data"]["settings.json"])
    return data


def container(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    c: dict[str, Any] = objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    return c


def test_sentinel_settings_carry_every_sentinel_and_the_master_name() -> None:
    s = settings_of(objects(pool()))
    hosts = [f"b-sentinel-{i}.b-sentinel-headless.ns.svc.cluster.local:26379" for i in range(3)]
    assert s["broker"] == {
        "scheme": "sentinel",
        "hosts": hosts,
        "db": 0,
        "masterName": "ns.b",
        "passwordEnv": "CELERIAC_BROKER_PASSWORD",
        "sentinelPasswordEnv": "CELERIAC_BROKER_SENTINEL_PASSWORD",
    }
    assert s["results"]["db"] == 1
    assert s["conf"]["worker_prefetch_multiplier"] == 1


def test_passwords_come_from_secret_references_only() -> None:
    env = {e["name"]: e for e in container(objects(pool()))["env"]}
    ref = env["CELERIAC_BROKER_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "b-auth", "key": "password"}
    assert all("value" not in e for n, e in env.items() if "PASSWORD" in n)


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        (None, 1),
        ({"limits": {"cpu": "1500m"}}, 2),
        ({"limits": {"cpu": 3}}, 3),
        ({"limits": {"cpu": "250m"}}, 1),
        ({"requests": {"cpu": "4"}}, 1),
    ],
)
def test_concurrency_follows_the_cpu_limit(resources: Any, expected: int) -> None:
    spec = pool(resources=resources) if resources else pool()
    assert concurrency(spec) == expected
    assert f"--concurrency={expected}" in worker_args(spec)


def test_grace_covers_hard_limit_and_soft_shutdown() -> None:
    spec = pool(timeLimitSeconds=300, softTimeLimitSeconds=240, softShutdownSeconds=30)
    assert grace_seconds(spec) == 360
    assert (
        objects(spec)["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        == 360
    )


def test_warns_when_visibility_timeout_is_shorter_than_a_time_limit() -> None:
    spec = pool(timeLimitSeconds=7200, visibilityTimeoutSeconds=3600)
    assert [r for r, _ in warnings(spec)] == ["VisibilityTimeoutTooShort"]
    assert warnings(pool(timeLimitSeconds=60)) == []


def test_acks_late_lets_running_tasks_finish_after_a_connection_loss() -> None:
    conf = settings_of(objects(pool(acksLate=True)))["conf"]
    assert conf["task_acks_late"] is True
    assert conf["worker_cancel_long_running_tasks_on_connection_loss"] is False
    assert "task_acks_late" not in settings_of(objects(pool()))["conf"]


def test_pyworkflow_gets_one_sentinel_and_concurrency_after_double_dash() -> None:
    spec = pool(runtime="pyworkflow", app="flows", concurrency=3)
    s = settings_of(objects(spec))
    assert s["broker"]["hosts"] == ["b-sentinel.ns.svc.cluster.local:26379"]
    args = s["args"]
    assert args[:4] == ["--module", "flows", "worker", "run"]
    assert args[args.index("--") + 1] == "--concurrency=3"


def test_replicas_do_not_restart_workers_but_settings_do() -> None:
    def template_annotations(spec: WorkerPoolSpec, replicas: int, fp: str = "") -> Any:
        objs = objects(spec, PoolFacts(SENTINEL, SENTINEL, replicas, fp))
        return objs["Deployment"]["spec"]["template"]["metadata"]["annotations"]

    base = template_annotations(pool(), 1)
    assert template_annotations(pool(), 5) == base
    assert template_annotations(pool(prefetchMultiplier=2), 1) != base
    assert template_annotations(pool(), 1, "secret-v2") != base


def test_no_result_backend_and_standalone_broker() -> None:
    s = settings_of(objects(pool(resultBackend={"type": "none"}), PoolFacts(STANDALONE, None, 1)))
    assert s["results"] is None
    assert s["broker"]["scheme"] == "redis"
    assert s["broker"]["hosts"] == ["s-master.ns.svc.cluster.local:6379"]
    assert "masterName" not in s["broker"]
