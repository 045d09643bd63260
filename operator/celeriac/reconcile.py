"""Pure reconcile decisions: (spec, observed facts) -> status patch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .api import WorkerPoolSpec, WorkflowBrokerSpec
from .conditions import now_rfc3339, set_condition

if TYPE_CHECKING:
    from .brokers import Observed
    from .render.connection import Connection

now = now_rfc3339


def validation_message(err: ValidationError) -> str:
    """`spec.a.b: message` per problem; never echoes input values (they may be secret)."""
    parts = []
    for e in err.errors(include_url=False, include_input=False):
        path = ".".join(["spec", *(str(p) for p in e["loc"])])
        parts.append(f"{path}: {e['msg']}")
    return "; ".join(parts)


def _conditions(
    status: Mapping[str, Any], generation: int, now: str, **states: tuple[str, str, str]
) -> list[dict[str, Any]]:
    conds = status.get("conditions")
    for type_, (value, reason, message) in states.items():
        conds = set_condition(conds, type_, value, reason, message, generation, now)
    return list(conds or [])


def broker_invalid(
    status: Mapping[str, Any], generation: int, err: ValidationError, now: str
) -> dict[str, Any]:
    msg = validation_message(err)
    return {
        "observedGeneration": generation,
        "phase": "Invalid",
        "conditions": _conditions(
            status,
            generation,
            now,
            Ready=("False", "ConfigInvalid", msg),
            Degraded=("True", "ConfigInvalid", msg),
        ),
    }


@dataclass(frozen=True)
class ScalePlan:
    """How to change the number of Redis pods without losing the master."""

    apply_pods: int  # what the StatefulSet gets now
    doomed: tuple[int, ...]  # ordinals about to go: never promote them
    failover: bool  # the master is among them: hand over first, shrink later


def plan_redis_scale(current: int, desired: int, master_ordinal: int | None) -> ScalePlan:
    if desired >= current:
        return ScalePlan(desired, (), False)
    doomed = tuple(range(desired, current))
    if master_ordinal is not None and master_ordinal in doomed:
        return ScalePlan(current, doomed, True)
    return ScalePlan(desired, doomed, False)


@dataclass(frozen=True)
class PodState:
    name: str
    ready: bool
    current: bool  # runs the StatefulSet's update revision


def next_to_restart(
    redis_pods: list[PodState], sentinel_pods: list[PodState], master_pod: str | None
) -> str | None:
    """The one pod to delete next in a rollout (StatefulSets use OnDelete), or None.

    Replicas first, one at a time and only when every pod is ready (a replica is
    ready only once it is back in sync); then the master, whose preStop hook hands
    over with one planned failover; Sentinels last, never while Redis restarts."""
    pods = redis_pods + sentinel_pods
    if not pods or not all(p.ready for p in pods) or master_pod is None:
        return None
    for p in sorted(redis_pods, key=lambda p: p.name):
        if not p.current and p.name != master_pod:
            return p.name
    for p in redis_pods:
        if not p.current:
            return p.name
    for p in sorted(sentinel_pods, key=lambda p: p.name):
        if not p.current:
            return p.name
    return None


def ordinal_of(host: str) -> int | None:
    tail = pod_of(host).rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def pod_of(host: str) -> str:
    """b-redis-1.b-redis-headless.ns.svc.cluster.local -> b-redis-1."""
    return host.split(".", 1)[0]


def broker_status(
    spec: WorkflowBrokerSpec,
    conn: Connection,
    seen: Observed,
    status: Mapping[str, Any],
    generation: int,
    now: str,
) -> dict[str, Any]:
    out: dict[str, Any] = {"observedGeneration": generation, "connection": conn.status()}
    if seen.problem:
        reason, message = seen.problem
        out["phase"] = "Degraded"
        out["conditions"] = _conditions(
            status,
            generation,
            now,
            Ready=("False", reason, message),
            Degraded=("True", reason, message),
            Progressing=("False", reason, message),
        )
        return out
    if spec.mode == "external":
        msg = f"reachable at {', '.join(conn.hosts)}"
        out["phase"] = "Ready"
        out["conditions"] = _conditions(
            status,
            generation,
            now,
            Ready=("True", "Reachable", msg),
            Degraded=("False", "Reachable", msg),
            Progressing=("False", "Reachable", msg),
        )
        return out
    counts = f"{seen.redis_ready}/{seen.redis_wanted} redis"
    if spec.mode == "sentinel":
        counts += f", {seen.sentinel_ready}/{seen.sentinel_wanted} sentinels"
    settled = seen.redis_ready == seen.redis_wanted and seen.sentinel_ready == seen.sentinel_wanted
    if seen.topology:
        # Failover-ready, not just running: the Sentinels learn replicas from the
        # master's INFO (every 10 s); until they know them all, a failover could
        # find no replica to promote.
        healthy = sum(1 for r in seen.topology.replicas if r.link_up and not r.down)
        if healthy < seen.redis_wanted - 1 or not seen.topology.quorum_ok:
            settled = False
            counts += f", {healthy}/{seen.redis_wanted - 1} replicas known to Sentinel"
            if not seen.topology.quorum_ok:
                counts += f", {seen.topology.quorum_message}"
    old_master = status.get("master") or {}
    failovers = dict(status.get("failovers") or {"count": 0})
    if seen.master:
        pod = pod_of(seen.master)
        since = old_master.get("since") if old_master.get("pod") == pod else now
        if old_master.get("pod") and old_master.get("pod") != pod:
            failovers = {"count": int(failovers.get("count", 0)) + 1, "last": now}
        out["master"] = {"pod": pod, "address": seen.master, "since": since}
        out["failovers"] = failovers
        if seen.topology:
            out["replicas"] = seen.topology.status_replicas(pod_of)
            out["sentinels"] = {
                "known": len(seen.topology.sentinels) + 1,
                "quorumOk": seen.topology.quorum_ok,
            }
        ready = ("True", "MasterAvailable", f"master {pod}; {counts}")
    else:
        if old_master:
            out["master"] = old_master  # keep: it also means "bootstrapped", never again
        ready = ("False", "NoMaster", f"no master known yet; {counts}")
    progressing = ("False", "Settled", counts) if settled else ("True", "PodsNotReady", counts)
    out["phase"] = "Ready" if ready[0] == "True" and settled else "Pending"
    if ready[0] == "True" and not settled:
        out["phase"] = "Progressing"
    out["conditions"] = _conditions(
        status,
        generation,
        now,
        Ready=ready,
        Progressing=progressing,
        Degraded=("False", "AsExpected", counts),
    )
    return out


@dataclass(frozen=True)
class DeploymentState:
    """A worker Deployment as read back."""

    wanted: int  # spec.replicas
    replicas: int
    ready: int
    updated: int
    current: bool  # the controller has seen the latest spec


def pool_blocked(
    status: Mapping[str, Any], generation: int, reason: str, message: str, now: str
) -> dict[str, Any]:
    conds = _conditions(status, generation, now, Ready=("False", reason, message))
    return {"observedGeneration": generation, "phase": "Invalid", "conditions": conds}


def pool_status(
    pool: str,
    spec: WorkerPoolSpec,
    generation: int,
    status: Mapping[str, Any],
    deployment: DeploymentState | None,
    broker_ready: bool,
    problem: tuple[str, str] | None,
    now: str,
) -> dict[str, Any]:
    """Status of a WorkerPool: replicas for the scale subresource, Ready and a
    ConfigWarning condition for settings that lose or repeat tasks."""
    from .render.pool import selector_string, warnings

    name = spec.broker_ref.name
    d = deployment or DeploymentState(0, 0, 0, 0, False)
    if problem:
        ready, phase = ("False", *problem), "Pending"
    elif not broker_ready:
        ready, phase = ("False", "BrokerNotReady", f"WorkflowBroker {name} is not Ready"), "Pending"
    elif not d.current or d.updated < d.wanted or d.ready < d.wanted or d.replicas > d.wanted:
        counts = f"{d.ready}/{d.wanted} workers ready, {d.updated} up to date"
        ready, phase = ("False", "RollingOut", counts), "Progressing"
    elif d.wanted == 0:
        ready, phase = ("True", "ScaledToZero", "no workers; the backlog is empty"), "Ready"
    else:
        ready, phase = ("True", "WorkersReady", f"{d.ready} workers ready"), "Ready"
    found = warnings(spec)
    warning = (
        ("True", found[0][0], "; ".join(m for _, m in found))
        if found
        else ("False", "AsExpected", "no risky settings")
    )
    conds = _conditions(status, generation, now, Ready=ready, ConfigWarning=warning)
    return {
        "observedGeneration": generation,
        "phase": phase,
        "conditions": conds,
        "replicas": d.replicas,
        "readyReplicas": d.ready,
        "selector": selector_string(pool),
    }
