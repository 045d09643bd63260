from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from celeriac.api import WorkerPoolSpec, WorkflowBrokerSpec
from celeriac.brokers import Observed
from celeriac.reconcile import (
    DeploymentState,
    broker_invalid,
    broker_status,
    pool_blocked,
    pool_status,
)
from celeriac.render.connection import connection

POOL = {"brokerRef": {"name": "b"}, "image": "img", "app": "proj:app"}
SENTINEL = WorkflowBrokerSpec.model_validate({"mode": "sentinel"})
CONN = connection("b", "ns", SENTINEL)
MASTER0 = "b-redis-0.b-redis-headless.ns.svc.cluster.local"
MASTER1 = "b-redis-1.b-redis-headless.ns.svc.cluster.local"


def cond(status: dict[str, Any], type_: str = "Ready") -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_invalid_spec_names_the_field_without_echoing_values() -> None:
    try:
        WorkflowBrokerSpec.model_validate({"mode": "sentinel", "sentinel": {"replicas": "s3cr3t"}})
    except ValidationError as err:
        out = broker_invalid({}, 1, err, "t")
    ready = cond(out)
    assert (ready["status"], ready["reason"]) == ("False", "ConfigInvalid")
    assert "spec.sentinel.replicas" in ready["message"]
    assert "s3cr3t" not in ready["message"]


def test_broker_without_master_is_not_ready() -> None:
    seen = Observed(redis_ready=1, redis_wanted=3, sentinel_ready=0, sentinel_wanted=3)
    out = broker_status(SENTINEL, CONN, seen, {}, 2, "t")
    assert out["observedGeneration"] == 2
    assert (cond(out)["status"], cond(out)["reason"]) == ("False", "NoMaster")
    assert cond(out, "Progressing")["status"] == "True"
    assert "master" not in out
    assert out["connection"]["masterName"] == "ns.b"


def test_master_known_and_settled_is_ready_then_failover_is_counted() -> None:
    seen = Observed(3, 3, 3, 3, MASTER0)
    first = broker_status(SENTINEL, CONN, seen, {}, 1, "t1")
    assert first["phase"] == "Ready"
    assert first["master"] == {"pod": "b-redis-0", "address": MASTER0, "since": "t1"}
    assert first["failovers"] == {"count": 0}
    same = broker_status(SENTINEL, CONN, seen, first, 1, "t2")
    assert same["master"]["since"] == "t1"
    moved = broker_status(SENTINEL, CONN, Observed(2, 3, 3, 3, MASTER1), same, 1, "t3")
    assert moved["master"]["pod"] == "b-redis-1"
    assert moved["failovers"] == {"count": 1, "last": "t3"}
    assert moved["phase"] == "Progressing"
    assert cond(moved)["status"] == "True"


def test_master_is_remembered_while_unknown() -> None:
    first = broker_status(SENTINEL, CONN, Observed(3, 3, 3, 3, MASTER0), {}, 1, "t1")
    blind = broker_status(SENTINEL, CONN, Observed(0, 3, 0, 3, None), first, 1, "t2")
    assert blind["master"] == first["master"]
    assert cond(blind)["reason"] == "NoMaster"


def test_problem_is_degraded() -> None:
    seen = Observed(problem=("SecretNotFound", "Secret x with key password not found"))
    out = broker_status(SENTINEL, CONN, seen, {}, 1, "t")
    assert out["phase"] == "Degraded"
    assert (cond(out, "Degraded")["status"], cond(out, "Degraded")["reason"]) == (
        "True",
        "SecretNotFound",
    )


def test_pool_reasons() -> None:
    spec = WorkerPoolSpec.model_validate(POOL)
    ready = DeploymentState(wanted=2, replicas=2, ready=2, updated=2, current=True)

    def reason(**kw: Any) -> str:
        args: dict[str, Any] = {"deployment": ready, "broker_ready": True, "problem": None}
        args.update(kw)
        return str(cond(pool_status("w", spec, 1, {}, now="t", **args))["reason"])

    assert reason(problem=("BrokerNotFound", "WorkflowBroker b not found")) == "BrokerNotFound"
    assert reason(broker_ready=False) == "BrokerNotReady"
    rolling = DeploymentState(wanted=2, replicas=3, ready=2, updated=1, current=True)
    assert reason(deployment=rolling) == "RollingOut"
    assert reason() == "WorkersReady"
    zero = DeploymentState(wanted=0, replicas=0, ready=0, updated=0, current=True)
    assert reason(deployment=zero) == "ScaledToZero"
    out = pool_status("w", spec, 1, {}, ready, True, None, "t")
    assert (out["replicas"], out["readyReplicas"], out["phase"]) == (2, 2, "Ready")
    assert out["selector"] == "app.kubernetes.io/component=worker,celeriac.io/pool=w"
    assert cond(out, "ConfigWarning")["reason"] == "NoTimeLimit"
    blocked = pool_blocked({}, 2, "ConfigInvalid", "spec.concurrency: too small", "t")
    assert (cond(blocked)["reason"], blocked["observedGeneration"]) == ("ConfigInvalid", 2)


def test_scale_plan_keeps_the_master() -> None:
    from celeriac.reconcile import ScalePlan, ordinal_of, plan_redis_scale

    assert plan_redis_scale(3, 5, 0) == ScalePlan(5, (), False)
    assert plan_redis_scale(5, 2, 1) == ScalePlan(2, (2, 3, 4), False)
    assert plan_redis_scale(5, 2, 3) == ScalePlan(5, (2, 3, 4), True)
    assert plan_redis_scale(5, 2, None) == ScalePlan(2, (2, 3, 4), False)
    assert ordinal_of("b-redis-12.h.ns.svc.cluster.local") == 12
    assert ordinal_of("external") is None


def test_rollout_order_replicas_then_master_then_sentinels() -> None:
    from celeriac.reconcile import PodState, next_to_restart

    def redis_pods(*current: bool, ready: bool = True) -> list[PodState]:
        return [PodState(f"r-{i}", ready, c) for i, c in enumerate(current)]

    sentinels = [PodState(f"s-{i}", True, False) for i in range(3)]
    assert next_to_restart(redis_pods(False, False, False), sentinels, "r-0") == "r-1"
    assert next_to_restart(redis_pods(False, True, False), sentinels, "r-0") == "r-2"
    assert next_to_restart(redis_pods(False, True, True), sentinels, "r-0") == "r-0"
    assert next_to_restart(redis_pods(True, True, True), sentinels, "r-1") == "s-0"
    # A pod still catching up (not ready) holds everything.
    assert next_to_restart(redis_pods(False, True, False, ready=False), sentinels, "r-0") is None
    done = [PodState(f"s-{i}", True, True) for i in range(3)]
    assert next_to_restart(redis_pods(True, True, True), done, "r-0") is None
    assert next_to_restart(redis_pods(False, False), done, None) is None
