"""Pod status as the kubelet reports it, computed from container records (dev and tests only).

Pure: `pod_status` turns what the local node knows about a pod's containers
into the `status` object it writes through the status subresource.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

# Conditions the node owns; others (PodScheduled, readiness gates) are kept as they are.
OWN_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    state: dict[str, Any] = {"reason": reason}
    if message:
        state["message"] = message
    return {"waiting": state}


@dataclass
class ContainerRecord:
    """The status-level view of one container."""

    name: str
    image: str
    state: dict[str, Any] = field(default_factory=lambda: waiting("ContainerCreating"))
    last_state: dict[str, Any] = field(default_factory=dict)
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    container_id: str = ""
    image_id: str = ""

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def succeeded(self) -> bool:
        return bool(self.state.get("terminated", {}).get("exitCode") == 0)


def phase(
    restart_policy: str, init_done: bool, init_failed: bool, containers: list[ContainerRecord]
) -> str:
    """The kubelet's getPhase, for pods without sidecar containers."""
    if init_failed:
        return "Failed"
    if not init_done:
        return "Pending"
    running = waiting_ = stopped = succeeded = 0
    for c in containers:
        if c.running:
            running += 1
        elif "terminated" in c.state:
            stopped += 1
            succeeded += c.succeeded
        elif "terminated" in c.last_state:
            stopped += 1  # restarting after an exit
        else:
            waiting_ += 1
    if waiting_:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if restart_policy == "Never" else "Running"
    return "Pending"


def _condition(
    previous: dict[str, dict[str, Any]], kind: str, ok: bool, reason: str = "", message: str = ""
) -> dict[str, Any]:
    status = "True" if ok else "False"
    old = previous.get(kind)
    since = old["lastTransitionTime"] if old and old.get("status") == status else now()
    cond: dict[str, Any] = {"type": kind, "status": status, "lastTransitionTime": since}
    if not ok and reason:
        cond["reason"] = reason
        if message:
            cond["message"] = message
    return cond


def pod_status(
    pod: dict[str, Any],
    *,
    pod_ip: str,
    host_ip: str,
    start_time: str,
    sandbox_ready: bool,
    init_containers: list[ContainerRecord],
    containers: list[ContainerRecord],
    init_done: bool,
    init_failed: bool,
    written_conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The status to write; transition times come from `written_conditions` (the
    node's own last write) when given, since the pod object may lag behind it."""
    spec = pod.get("spec", {})
    old_status = pod.get("status") or {}
    previous = {c["type"]: c for c in old_status.get("conditions") or []}
    previous.update({c["type"]: c for c in written_conditions or []})
    the_phase = phase(spec.get("restartPolicy", "Always"), init_done, init_failed, containers)
    terminal = the_phase in ("Succeeded", "Failed")
    unready = [c.name for c in containers if not c.ready]
    incomplete = [c.name for c in init_containers if not c.succeeded]
    gates = [g["conditionType"] for g in spec.get("readinessGates") or []]
    gates_ok = all(previous.get(g, {}).get("status") == "True" for g in gates)
    if terminal:
        ready_reason, ready_message = "PodCompleted", ""
    else:
        ready_reason = "ContainersNotReady"
        ready_message = f"containers with unready status: [{' '.join(unready)}]"
    ready = not unready and not terminal
    conditions = [
        c for c in old_status.get("conditions") or [] if c.get("type") not in OWN_CONDITIONS
    ]
    conditions += [
        _condition(previous, "PodReadyToStartContainers", sandbox_ready and not terminal),
        _condition(
            previous,
            "Initialized",
            init_done,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(incomplete)}]",
        ),
        _condition(previous, "ContainersReady", ready, ready_reason, ready_message),
        _condition(
            previous,
            "Ready",
            ready and gates_ok,
            ready_reason if not ready else "ReadinessGatesNotReady",
            ready_message if not ready else "",
        ),
    ]
    status: dict[str, Any] = {
        "phase": the_phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "containerStatuses": [c.to_api() for c in containers],
    }
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if init_containers:
        status["initContainerStatuses"] = [c.to_api() for c in init_containers]
    return status
